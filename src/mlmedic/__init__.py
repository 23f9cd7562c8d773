"""mlmedic: a self-healing MLOps pipeline for tabular models.

The library API; the ``mlmedic`` command is a thin layer over it. Names are imported lazily, so
``import mlmedic.events`` (say, in a restarting server) does not pay for scikit-learn or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckReport": "mlmedic.data.checks",
    "Clock": "mlmedic.clock",
    "DataContract": "mlmedic.data.contract",
    "DataStageResult": "mlmedic.data.stage",
    "Event": "mlmedic.events",
    "EventKind": "mlmedic.events",
    "EventStore": "mlmedic.events",
    "MedicError": "mlmedic.errors",
    "Outcome": "mlmedic.events",
    "Project": "mlmedic.project",
    "Registry": "mlmedic.registry",
    "RepairResult": "mlmedic.data.repair",
    "Repairer": "mlmedic.data.repair",
    "RunResult": "mlmedic.pipeline",
    "Settings": "mlmedic.config",
    "SimulatedClock": "mlmedic.clock",
    "SystemClock": "mlmedic.clock",
    "check_file": "mlmedic.data.stage",
    "fix_file": "mlmedic.data.stage",
    "heal_data": "mlmedic.data.stage",
    "load_settings": "mlmedic.config",
    "read_table": "mlmedic.data.io",
    "resolve_contract": "mlmedic.data.stage",
    "run_checks": "mlmedic.data.checks",
    "run_pipeline": "mlmedic.pipeline",
    "train": "mlmedic.training",
    "write_default_configs": "mlmedic.config",
    "write_table": "mlmedic.data.io",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlmedic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
