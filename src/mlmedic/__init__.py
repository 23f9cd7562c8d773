"""mlmedic: a self-healing MLOps pipeline for tabular models.

The library API; the ``mlmedic`` command is a thin layer over it, and every command has its
call here (a test holds the two together). Names are imported lazily, so ``import
mlmedic.events`` (say, in a restarting server) does not pay for scikit-learn or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {  # name -> its module (``module:attribute`` where the module calls it otherwise)
    "Adopted": "mlmedic.adopt",
    "CheckReport": "mlmedic.data.checks",
    "Clock": "mlmedic.clock",
    "DataContract": "mlmedic.data.contract",
    "DataStageResult": "mlmedic.data.stage",
    "Event": "mlmedic.events",
    "EventKind": "mlmedic.events",
    "EventStore": "mlmedic.events",
    "FeedbackLog": "mlmedic.logstore",
    "MedicError": "mlmedic.errors",
    "Mode": "mlmedic.releases",
    "Monitor": "mlmedic.monitor",
    "Move": "mlmedic.releases",
    "Outcome": "mlmedic.events",
    "Project": "mlmedic.project",
    "Registry": "mlmedic.registry",
    "Release": "mlmedic.releases",
    "ReleaseStateError": "mlmedic.releases",
    "ReleaseVerdict": "mlmedic.monitor.releases",
    "RepairResult": "mlmedic.data.repair",
    "Repairer": "mlmedic.data.repair",
    "ReplayResult": "mlmedic.replay",
    "RunResult": "mlmedic.pipeline",
    "Settings": "mlmedic.config",
    "SimulatedClock": "mlmedic.clock",
    "State": "mlmedic.releases",
    "Supervisor": "mlmedic.serving.supervisor",
    "SystemClock": "mlmedic.clock",
    "Task": "mlmedic.tasks",
    "abort_release": "mlmedic.monitor.releases",
    "adopt": "mlmedic.adopt",
    "build_dashboard": "mlmedic.dashboard:build",
    "check_file": "mlmedic.data.stage",
    "fix_file": "mlmedic.data.stage",
    "heal_data": "mlmedic.data.stage",
    "load_settings": "mlmedic.config",
    "promote_release": "mlmedic.monitor.releases",
    "read_table": "mlmedic.data.io",
    "record_feedback": "mlmedic.logstore",
    "recover_once": "mlmedic.serving.recover",
    "release_status": "mlmedic.monitor.releases",
    "replay": "mlmedic.replay",
    "resolve_contract": "mlmedic.data.stage",
    "run_checks": "mlmedic.data.checks",
    "run_demo": "mlmedic.demo",
    "run_pipeline": "mlmedic.pipeline",
    "task_of": "mlmedic.tasks",
    "train": "mlmedic.training",
    "write_default_configs": "mlmedic.config",
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
