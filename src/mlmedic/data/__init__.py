"""Stage 1: the data contract, the checks, the repairs, and the check → fix → re-check flow."""

from mlmedic.data.checks import CheckReport, CheckResult, run_checks
from mlmedic.data.contract import DataContract
from mlmedic.data.io import read_table, write_table
from mlmedic.data.repair import Repairer, RepairResult
from mlmedic.data.stage import DataStageResult, heal_data, resolve_contract

__all__ = [
    "CheckReport",
    "CheckResult",
    "DataContract",
    "DataStageResult",
    "RepairResult",
    "Repairer",
    "heal_data",
    "read_table",
    "resolve_contract",
    "run_checks",
    "write_table",
]
