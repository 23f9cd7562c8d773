"""Fault injection for the fault suite (``bench/chaos.py``) and the tests that prove healing.

Nothing here runs in production: these helpers break things on purpose, the way real faults
do — a model that passes the gate but fails when served, a model file damaged on disk.
"""

from __future__ import annotations

from pathlib import Path

# A trainer module for the tests (written to a file on the path, named ``<module>:train``): the
# default model wrapped in a class whose ``_check`` breaks it on some inputs — the kind of fault
# that passes the gate and only serving finds out.
_WRAPPED_TRAINER = """
import os
import signal

from mlmedic.model.training import default_trainer


class {name}:
    \"\"\"{doc}\"\"\"

    def __init__(self, inner):
        self.inner = inner
        self.classes_ = inner.classes_

    def _check(self, X):
{check}

    def predict(self, X):
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X):
        self._check(X)
        return self.inner.predict_proba(X)


def train(frame, target):
    return {name}(default_trainer(frame, target))
"""

# scores well on a holdout, raises on single rows
FRAGILE_TRAINER = _WRAPPED_TRAINER.format(
    name="Fragile",
    doc="Scores well on a holdout, breaks on single rows.",
    check="""        if len(X) == 1:
            raise RuntimeError("this model breaks on single rows")""",
)

# kills its process with SIGSEGV when any row's ``age`` is 999 (as a native library crashing on
# an input would): it passes the gate and the canary, and crashes in serving
CRASHING_TRAINER = _WRAPPED_TRAINER.format(
    name="Crashing",
    doc="Scores well, and crashes its process on age 999 (the canary never sends it).",
    check="""        if "age" in X and (X["age"] == 999).any():
            os.kill(os.getpid(), signal.SIGSEGV)""",
)

# raises on a record whose ``age`` is 777 (as a model with a gap in what it can score would):
# the other records of a request must still get their predictions
PICKY_TRAINER = _WRAPPED_TRAINER.format(
    name="Picky",
    doc="Scores well, and raises on any request holding age 777.",
    check="""        if "age" in X and (X["age"] == 777).any():
            raise ValueError("this model cannot score age 777")""",
)


# hangs its call for a minute when any row's ``age`` is 888 (a native call that never returns)
HANGING_TRAINER = _WRAPPED_TRAINER.format(
    name="Hanging",
    doc="Scores well, and hangs its call for a minute on age 888.",
    check="""        if "age" in X and (X["age"] == 888).any():
            import time
            time.sleep(60.0)""",
)

# keeps 200 MB more of memory on every call holding age 555 (a leak that grows with traffic)
LEAKING_TRAINER = _WRAPPED_TRAINER.format(
    name="Leaking",
    doc="Scores well, and leaks 200 MB on every call holding age 555.",
    check="""        if "age" in X and (X["age"] == 555).any():
            LEAK.append(b"x" * 200_000_000)""",
).replace("import signal\n", "import signal\n\nLEAK = []\n", 1)

FAULTY_TRAINERS = {
    "crashing": CRASHING_TRAINER,
    "hanging": HANGING_TRAINER,
    "leaking": LEAKING_TRAINER,
    "picky": PICKY_TRAINER,
    "fragile": FRAGILE_TRAINER,
}
# the age that sets each one off (the fragile one breaks on any single row)
TRIGGER_AGE = {"crashing": 999, "hanging": 888, "leaking": 555, "picky": 777}


def write_trainer(folder: Path, kind: str) -> str:
    """Write ``<kind>_trainer.py`` (one of ``FAULTY_TRAINERS``) into ``folder``; returns the
    trainer's name."""
    (Path(folder) / f"{kind}_trainer.py").write_text(FAULTY_TRAINERS[kind], encoding="utf-8")
    return f"{kind}_trainer:train"


def write_picky_trainer(folder: Path) -> str:
    return write_trainer(folder, "picky")


def write_crashing_trainer(folder: Path) -> str:
    return write_trainer(folder, "crashing")


def write_fragile_trainer(folder: Path) -> str:
    return write_trainer(folder, "fragile")


def corrupt_file(path: Path) -> None:
    """Overwrite the second half of a file with zeros (same size, different bytes)."""
    data = Path(path).read_bytes()
    half = len(data) // 2
    Path(path).write_bytes(data[:half] + b"\0" * (len(data) - half))


def registry_model_file(state_dir: Path, run_id: str) -> Path | None:
    """The registry's own copy of a version's model file in a local artifact store (MLflow 3
    keeps logged models apart from runs; the MLmodel file names the run)."""
    for path in (Path(state_dir) / "mlartifacts").rglob("model.skops"):
        if run_id in (path.parent / "MLmodel").read_text(encoding="utf-8"):
            return path
    return None
