"""mlmedic: a self-healing MLOps pipeline for tabular models.

The library API; the ``mlmedic`` command is a thin layer over it, and every command has its
call here (a test holds the two together). Names are imported lazily, so ``import
mlmedic.store.events`` (say, in a restarting server) does not pay for scikit-learn or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {  # name -> its module (``module:attribute`` where the module calls it otherwise)
    "Adopted": "mlmedic.heal.adopt",
    "CheckReport": "mlmedic.data.checks",
    "Clock": "mlmedic.core.clock",
    "DataContract": "mlmedic.data.contract",
    "DataStageResult": "mlmedic.data.stage",
    "Event": "mlmedic.store.events",
    "EventKind": "mlmedic.store.events",
    "EventStore": "mlmedic.store.events",
    "FeedbackLog": "mlmedic.store.logstore",
    "MedicError": "mlmedic.core.errors",
    "Mode": "mlmedic.heal.releases.states",
    "Monitor": "mlmedic.heal.monitor",
    "Move": "mlmedic.heal.releases.states",
    "Outcome": "mlmedic.store.events",
    "Project": "mlmedic.model.project",
    "Registry": "mlmedic.model.registry",
    "Release": "mlmedic.heal.releases.states",
    "ReleaseStateError": "mlmedic.heal.releases.states",
    "ReleaseVerdict": "mlmedic.heal.releases.judge",
    "RepairResult": "mlmedic.data.repair",
    "Repairer": "mlmedic.data.repair",
    "ReplayResult": "mlmedic.heal.replay",
    "RunResult": "mlmedic.heal.pipeline",
    "Settings": "mlmedic.core.config",
    "SimulatedClock": "mlmedic.core.clock",
    "State": "mlmedic.heal.releases.states",
    "Supervisor": "mlmedic.serving.supervisor",
    "SystemClock": "mlmedic.core.clock",
    "Task": "mlmedic.model.tasks",
    "abort_release": "mlmedic.heal.releases.judge",
    "adopt": "mlmedic.heal.adopt",
    "build_dashboard": "mlmedic.views.dashboard:build",
    "check_file": "mlmedic.data.stage",
    "fix_file": "mlmedic.data.stage",
    "heal_data": "mlmedic.data.stage",
    "load_settings": "mlmedic.core.config",
    "promote_release": "mlmedic.heal.releases.judge",
    "read_table": "mlmedic.data.io",
    "record_feedback": "mlmedic.store.logstore",
    "recover_once": "mlmedic.serving.recover",
    "release_status": "mlmedic.heal.releases.judge",
    "replay": "mlmedic.heal.replay",
    "resolve_contract": "mlmedic.data.stage",
    "run_checks": "mlmedic.data.checks",
    "run_demo": "mlmedic.cli.demo",
    "run_pipeline": "mlmedic.heal.pipeline",
    "task_of": "mlmedic.model.tasks",
    "train": "mlmedic.model.training",
    "write_default_configs": "mlmedic.core.config",
    "write_table": "mlmedic.data.io",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'mlmedic' has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
