"""Does the suite catch a slip in each decision the healer rests on?

Each mutant below changes one comparison, boundary, index or order in ``src/mlmedic`` — the kind
of slip a tired edit makes — and names the tests that own that decision. The script applies one
mutant at a time, runs its tests, and restores the file (always, even on Ctrl-C). A mutant the
tests do not fail on *survived*: the decision is not really tested.

    python scripts/mutation_check.py            # every mutant; exit 1 if any survived
    python scripts/mutation_check.py --list     # what is mutated, and which tests own it
    python scripts/mutation_check.py -k gate    # only mutants whose name contains "gate"

It checks that each mutant's text is found exactly once, so a refactor that moves a decision
fails here loudly instead of silently testing nothing. Targeted (a decision and its owning
tests) rather than exhaustive: ``mutmut`` over the whole tree takes hours on two cores.

Honest by construction (#31 item 7):
- the tests run against *this* checkout (``PYTHONPATH`` is its ``src``, and the first run
  checks that ``mlmedic`` is imported from here, not from another install);
- every owning test set runs unmutated first and must pass: a test that fails anyway cannot
  kill anything;
- a mutant is killed only when an owning test *fails* (pytest's exit 1 with a test failure in
  its JUnit report that is not an import, syntax or collection error); an error while
  collecting, a usage error or no test run is reported as such, never counted as a kill.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mlmedic"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
NOT_A_KILL = ("ImportError", "ModuleNotFoundError", "SyntaxError", "IndentationError")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # under src/mlmedic
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files or node ids, with -k when given


MUTANTS = [
    # the gate (stage 3): floors, the allowed drop, "beats the champion"
    Mutant(
        "gate: an accuracy exactly at the floor fails",
        "model/gate.py",
        "if not accuracy >= config.min_accuracy_threshold:",
        "if not accuracy > config.min_accuracy_threshold:",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate: a drop of exactly the allowance passes",
        "model/gate.py",
        "gap >= allowed and gap > 0,",
        "gap > allowed and gap > 0,",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate: an equal candidate is a drop when none is allowed",
        "model/gate.py",
        "gap >= allowed and gap > 0,",
        "gap >= allowed and gap >= 0,",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate: an equal candidate beats the champion",
        "model/gate.py",
        "else accuracy > champion_accuracy,",
        "else accuracy >= champion_accuracy,",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate: a drop needs no significance",
        "model/gate.py",
        "if not (significant and large):",
        "if not large:",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate: the F1 floor is not scaled by prevalence",
        "model/gate.py",
        "return floor * (2 * prevalence / (1 + prevalence)) / (2 / 3)",
        "return floor * (2 * prevalence / (1 + prevalence))",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "run: the gate is not shown the champion",
        "heal/pipeline.py",
        "            found[0] if found is not None else None,\n"
        "            settings.model_validation,",
        "            None,\n            settings.model_validation,",
        ("tests/test_pipeline.py", "-k", "loses_to_the_champion or bad_candidate"),
    ),
    # the cooldown and the policy
    Mutant(
        "cooldown: a retrain exactly at the end of the cooldown waits",
        "heal/policy.py",
        "        if now < allowed_at:",
        "        if now <= allowed_at:",
        ("tests/test_policy.py",),
    ),
    Mutant(
        "policy: a drop needs no minimum size",
        "heal/policy.py",
        "test.significant and test.size >= validation.performance_degradation_threshold",
        "test.significant and test.size > validation.performance_degradation_threshold",
        ("tests/test_policy.py",),
    ),
    Mutant(
        "policy: a heal that hurts is not rolled back on probation",
        "heal/policy.py",
        "    if probation:\n        decision.action",
        "    if not probation:\n        decision.action",
        ("tests/test_policy.py",),
    ),
    # drift
    Mutant(
        "drift: a feature's severity is not capped",
        "data/drift/statistics.py",
        "r.weight * min(SEVERITY_CAP, r.severity or 1.0)",
        "r.weight * (r.severity or 1.0)",
        ("tests/test_drift.py",),
    ),
    Mutant(
        "drift: a batch at exactly the threshold drifts",
        "data/drift/statistics.py",
        "return DriftReport(results, score, threshold, score > threshold, weighted, rows)",
        "return DriftReport(results, score, threshold, score >= threshold, weighted, rows)",
        ("tests/test_drift.py",),
    ),
    # rollback order
    Mutant(
        "rollback: previous is the oldest champion, not the latest before",
        "model/registry/aliases.py",
        "return before_target[-1] if before_target else None",
        "return before_target[0] if before_target else None",
        ("tests/test_registry.py", "-k", "walks_back"),
    ),
    # the data contract
    Mutant(
        "contract: rare hits allowed at 2 sigma, not 3",
        "data/contract.py",
        "math.floor(expected + 3.0 * math.sqrt(",
        "math.floor(expected + 2.0 * math.sqrt(",
        ("tests/test_contract.py",),
    ),
    # one label rule
    Mutant(
        "labels: a boolean label is keyed as a number",
        "core/labels.py",
        "    if isinstance(value, bool):\n        return str(value)",
        "    if isinstance(value, bool):\n        return str(int(value))",
        ("tests/test_contract.py",),
    ),
    # retraining recipes and their evidence
    Mutant(
        "recipes: the current regime starts after its first row",
        "heal/monitor/recipes.py",
        "return np.flatnonzero(origin >= start)",
        "return np.flatnonzero(origin > start)",
        ("tests/test_recipes.py",),
    ),
    Mutant(
        "recipes: a quarter held out, not a fifth",
        "heal/monitor/recipes.py",
        "held = max(minimum, len(positions) // 5)",
        "held = max(minimum, len(positions) // 4)",
        ("tests/test_recipes.py",),
    ),
    Mutant(
        "candidates: a recipe that dropped the reference wins without evidence",
        "heal/candidates.py",
        "return best if found.better else kept",
        "return best",
        ("tests/test_recipes.py",),
    ),
    Mutant(
        "evidence: the paired test counts the wrong side",
        "core/evidence.py",
        'p_a = float(stats.binomtest(a_only, discordant, 0.5, alternative="greater").pvalue)',
        'p_a = float(stats.binomtest(b_only, discordant, 0.5, alternative="greater").pvalue)',
        ("tests/test_evidence.py",),
    ),
    # the supervisor
    Mutant(
        "supervisor: a dead worker's incident restarts every worker",
        "serving/incidents.py",
        "            dead_index=index,\n",
        "            dead_index=None,\n",
        ("tests/test_faults.py", "-k", "only_the_dead_worker"),
    ),
    # claims (one monitor at a time, across processes and hosts)
    Mutant(
        "claims: a claim is still held at the instant it expires",
        "store/events/claims.py",
        "WHERE mlmedic_claims.expires_at <= :now",
        "WHERE mlmedic_claims.expires_at < :now",
        ("tests/test_postgres.py", "-k", "claim_goes_to_exactly_one"),
    ),
    # a release judged on live traffic (#24): the split, the verdict, the limits, one verdict
    Mutant(
        "release: the canary split is flipped",
        "heal/releases/states.py",
        'return zlib.crc32(request_id.encode("utf-8")) / 4_294_967_296.0 < share',
        'return zlib.crc32(request_id.encode("utf-8")) / 4_294_967_296.0 > share',
        ("tests/test_release_rules.py",),
    ),
    Mutant(
        "release: the not-worse margin is read backwards",
        "heal/releases/judge.py",
        "if verdict.lower_bound > -deployment.not_worse_margin:",
        "if verdict.lower_bound < -deployment.not_worse_margin:",
        ("tests/test_release_rules.py",),
    ),
    Mutant(
        "release: a worse candidate is taken for a better one",
        "heal/releases/judge.py",
        "    if test.worse:\n",
        "    if test.better:\n",
        ("tests/test_release_rules.py",),
    ),
    Mutant(
        "release: the error rate at exactly the limit retires",
        "heal/releases/judge.py",
        "failures / calls > deployment.max_error_rate",
        "failures / calls >= deployment.max_error_rate",
        ("tests/test_release_rules.py",),
    ),
    Mutant(
        "release: max_requests reached (not exceeded) retires",
        "heal/releases/judge.py",
        "if verdict.requests > deployment.max_requests:",
        "if verdict.requests >= deployment.max_requests:",
        ("tests/test_release_rules.py",),
    ),
    Mutant(
        "release: the limits wait for the comparison once labels arrive",
        "heal/releases/judge.py",
        "    why = _limits(project, release, verdict, deployment, now)\n",
        '    why = "" if verdict.labelled else _limits(\n'
        "project, release, verdict, deployment, now)\n",
        ("tests/test_release_states.py",),
    ),
    Mutant(
        "release: an ended release may move again",
        "heal/releases/states.py",
        "        if not current.running:\n",
        "        if False:\n",
        ("tests/test_release_states.py",),
    ),
    Mutant(
        "release: an end takes no claim shared across hosts",
        "heal/releases/states.py",
        'return bool(claim(f"release-end:{release.id}", seconds=86_400.0))',
        "return True",
        ("tests/test_release_states.py",),
    ),
    Mutant(
        "release: decide_without_labels is ignored",
        "heal/releases/judge.py",
        "if deployment.decide_without_labels and verdict.pairs >= deployment.min_labelled_requests",
        "if verdict.pairs >= deployment.min_labelled_requests",
        ("tests/test_release_states.py",),
    ),
    Mutant(
        "registry: a rejected version may be promoted",
        "model/registry/aliases.py",
        "        if found.status == REJECTED:\n",
        "        if False:\n",
        ("tests/test_release_rules.py", "-k", "second_release_is_refused"),
    ),
    Mutant(
        "release: the peer's user is not checked",
        "serving/releases/wire.py",
        'return int(struct.unpack("3i", raw)[1]) == os.getuid()',
        'return int(struct.unpack("3i", raw)[1]) != os.getuid()',
        ("tests/test_release_rules.py",),
    ),
]


def pytest(tests: tuple[str, ...]) -> tuple[int, list[str], str]:
    """Run ``tests`` on this checkout: (exit code, the failures' messages, the last line)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                *tests,
            ],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        failures = []
        if report.exists():
            for case in ElementTree.parse(report).iter("testcase"):
                for failure in case.findall("failure"):
                    failures.append(failure.get("message") or "")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, failures, lines[-1] if lines else ""


def killed_by(code: int, failures: list[str]) -> bool:
    """An owning test failed on the mutant's behaviour — not on importing or collecting it."""
    return code == 1 and any(not m.startswith(NOT_A_KILL) for m in failures)


def run(mutant: Mutant) -> tuple[bool, float, str]:
    """Apply, test, restore: (killed, seconds, the last line pytest printed)."""
    path = SRC / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(
            f"{mutant.name}: expected the text once in {mutant.path}, found it "
            f"{original.count(mutant.old)} times; the decision moved: update this script"
        )
    started = time.monotonic()
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        code, failures, last = pytest(mutant.tests)
    finally:
        path.write_text(original)
    return killed_by(code, failures), time.monotonic() - started, last


def check_the_baseline(chosen: list[Mutant]) -> None:
    """This checkout is the one tested, and every owning test set passes unmutated."""
    found = subprocess.run(
        [sys.executable, "-c", "import mlmedic; print(mlmedic.__file__)"],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not found.startswith(str(SRC)):
        raise SystemExit(f"the tests would import mlmedic from {found!r}, not from {SRC}")
    for tests in dict.fromkeys(m.tests for m in chosen):
        code, _, last = pytest(tests)
        if code != 0:
            raise SystemExit(f"unmutated, {' '.join(tests)} does not pass ({last}): fix it first")
        print(f"baseline  {' '.join(tests)}: {last}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    options = parser.parse_args()
    chosen = [m for m in MUTANTS if options.k.lower() in m.name.lower()]
    if options.list:
        for mutant in chosen:
            print(f"{mutant.name}\n    {mutant.path}; {' '.join(mutant.tests)}")
        return 0
    check_the_baseline(chosen)
    survived = []
    for mutant in chosen:
        killed, seconds, last = run(mutant)
        print(f"{'killed  ' if killed else 'SURVIVED'} {seconds:5.1f}s  {mutant.name}", flush=True)
        if not killed:
            survived.append(mutant.name)
            print(f"          tests: {' '.join(mutant.tests)} -> {last}")
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
