"""mlmedic: a self-healing MLOps pipeline for tabular models.

The library API; the ``mlmedic`` command is a thin layer over it.
"""

from mlmedic.clock import Clock, SimulatedClock, SystemClock
from mlmedic.config import Settings, load_settings, write_default_configs
from mlmedic.data import (
    CheckReport,
    DataContract,
    DataStageResult,
    Repairer,
    RepairResult,
    heal_data,
    read_table,
    resolve_contract,
    run_checks,
    write_table,
)
from mlmedic.data.stage import check_file, fix_file
from mlmedic.errors import MedicError
from mlmedic.events import Event, EventKind, EventStore, Outcome
from mlmedic.project import Project

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "Clock",
    "DataContract",
    "DataStageResult",
    "Event",
    "EventKind",
    "EventStore",
    "MedicError",
    "Outcome",
    "Project",
    "RepairResult",
    "Repairer",
    "Settings",
    "SimulatedClock",
    "SystemClock",
    "__version__",
    "check_file",
    "fix_file",
    "heal_data",
    "load_settings",
    "read_table",
    "resolve_contract",
    "run_checks",
    "write_default_configs",
    "write_table",
]
