"""The model registry: MLflow, with aliases ``champion`` and ``previous`` and local backups.

Embedded default: a SQLite tracking store and local artifacts under ``.mlmedic/``; any
``MLFLOW_TRACKING_URI`` (an ``mlflow server``, say) works instead. The package is five pieces,
each with one job, and this thin facade over them:

- ``connection``: the MLflow client and the one place its failures are classified;
- ``versions``: reading, tagging and logging versions (signature, example, metrics, baseline);
- ``pointer``: ``.mlmedic/champion.json``, its only reader and writer;
- ``backups``: exports, the backup store and its pruning;
- ``aliases``: promotion, rejection, online and offline rollback, every move an event.

Models are loaded with skops only, trusting exactly the types mlmedic recorded when it registered
the version (the ``mlmedic.skops_trusted_types`` tag; never the list stored beside the artifact,
which whoever uploads the artifact controls). A pickled version is refused unless the project sets
``model_training.allow_pickle_models_executing_code``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmedic.core.errors import RegistryError
from mlmedic.data.contract import DataContract
from mlmedic.model.local import load_local
from mlmedic.model.registry.aliases import Aliases, Rollback
from mlmedic.model.registry.backups import BackupStore
from mlmedic.model.registry.connection import Connection, is_local_store
from mlmedic.model.registry.pointer import POINTER_FILE, read_pointer
from mlmedic.model.registry.versions import (
    CHAMPION,
    CONTRACT_ARTIFACT,
    DRIFT_PROFILE_ARTIFACT,
    PREVIOUS,
    REASON_TAG,
    REPAIR_ARTIFACT,
    STATUS_TAG,
    TRUSTED_TYPES_TAG,
    VersionInfo,
    Versions,
)
from mlmedic.store.events import EventLog

if TYPE_CHECKING:  # training imports scikit-learn, which reading the registry never needs
    from mlmedic.model.training import TrainResult

__all__ = [
    "CHAMPION",
    "CONTRACT_ARTIFACT",
    "DRIFT_PROFILE_ARTIFACT",
    "POINTER_FILE",
    "PREVIOUS",
    "REASON_TAG",
    "REPAIR_ARTIFACT",
    "STATUS_TAG",
    "TRUSTED_TYPES_TAG",
    "Registry",
    "Rollback",
    "VersionInfo",
    "default_model_name",
    "is_local_store",
    "read_pointer",
]


def default_model_name(root: Path) -> str:
    """A registered-model name from the project directory's name.

    >>> default_model_name(Path("/tmp/My Churn Model!"))
    'My-Churn-Model'
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-.")
    return cleaned or "mlmedic-model"


class Registry:
    """The registered model of one project: a facade over the pieces of this package."""

    def __init__(
        self,
        state_dir: Path,
        events: EventLog,
        *,
        model_name: str,
        tracking_uri: str | None = None,
        max_backups: int = 10,
        backup_retention_days: float | None = None,
        allow_pickle: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.events = events
        self.model_name = model_name
        self.allow_pickle = allow_pickle
        if tracking_uri is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or (
                f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"
            )
        self.connection = Connection(tracking_uri, self.state_dir, model_name)
        self.version_store = Versions(self.connection, events)
        self.backup_store = BackupStore(
            self.connection,
            self.version_store,
            clock=lambda: events.clock,
            allow_pickle=allow_pickle,
            max_backups=max_backups,
            retention_days=backup_retention_days,
        )
        self.aliases = Aliases(self.version_store, self.backup_store, events)
        self.connection.on_connect = self.aliases.sync_pointer

    # ------------------------------------------------------------------ connection
    @property
    def tracking_uri(self) -> str:
        return self.connection.tracking_uri

    @property
    def local(self) -> bool:
        return self.connection.local

    @property
    def client(self) -> Any:
        """The MLflow client, created (and the server checked) on first use."""
        return self.connection.client

    def check_reachable(self, timeout: float = 5.0) -> None:
        self.connection.check_reachable(timeout)

    # ------------------------------------------------------------------ versions
    def info(self, version: int) -> VersionInfo:
        return self.version_store.info(version)

    def versions(self) -> list[VersionInfo]:
        """Every version of the model, oldest first."""
        return self.version_store.all()

    def alias(self, alias: str) -> VersionInfo | None:
        return self.version_store.alias(alias)

    def champion(self) -> VersionInfo | None:
        return self.version_store.alias(CHAMPION)

    def alias_version(self, alias: str) -> int | None:
        """The version ``alias`` points at: read directly when the store allows (no MLflow
        import), else through the client."""
        record = self.read_pointer()
        pending = record is not None and not record.get("synced", True)
        try:
            if pending:  # an offline rollback to sync first: that takes the client
                raise LookupError("offline rollback pending")
            return self.connection.quick_alias(alias)
        except LookupError:
            found = self.version_store.alias(alias)
            return None if found is None else found.version

    def trusted_types(self, version: int) -> list[str] | None:
        return self.version_store.trusted_types(version)

    def log_candidate(
        self,
        result: TrainResult,
        contract: DataContract,
        repair_statistics: dict[str, Any],
        *,
        tags: dict[str, str] | None = None,
        drift_profile: dict[str, Any] | None = None,
        dataset: tuple[Any, str] | None = None,
        reason: str = "run",
        raw: Any = None,
    ) -> VersionInfo:
        return self.version_store.log_candidate(
            result,
            contract,
            repair_statistics,
            tags=tags,
            drift_profile=drift_profile,
            dataset=dataset,
            reason=reason,
            raw=raw,
        )

    def set_tags(self, version: int, tags: dict[str, str]) -> None:
        """Version tags (``mlmedic.*``), one by one."""
        for key, value in tags.items():
            self.version_store.set_tag(version, key, value)

    def tag_gate(self, version: int, decision: dict[str, Any], summary: str = "") -> None:
        self.version_store.tag_gate(version, decision, summary)

    def load_contract(self, version: int) -> DataContract:
        return self.version_store.load_contract(version)

    def load_drift_profile(self, version: int) -> dict[str, Any] | None:
        return self.version_store.load_drift_profile(version)

    def load_model(self, version: int) -> Any:
        """The scikit-learn model of a version (from this project's registry only), loaded with
        skops and the types mlmedic recorded for it; pickle only when the project opted in."""

        with tempfile.TemporaryDirectory() as folder:
            exported = self.export(version, Path(folder) / "version")
            try:
                return load_local(exported, version, allow_pickle=self.allow_pickle).model
            except Exception as exc:
                raise RegistryError(f"cannot load v{version}: {exc}") from exc

    # ------------------------------------------------------------------ aliases
    def promote(self, version: int, reason: str) -> VersionInfo | None:
        return self.aliases.promote(version, reason)

    def reject(self, version: int, reason: str) -> None:
        self.aliases.reject(version, reason)

    def rollback(
        self, to: int | None = None, *, reason: str = "manual rollback", by: str = "person"
    ) -> Rollback:
        """``by``: who asked — ``person``, ``monitor`` or ``supervisor`` (the dashboard counts
        automatic and manual rollbacks apart)."""
        return self.aliases.rollback(to, reason=reason, by=by)

    def rollback_offline(
        self,
        to: int | None = None,
        *,
        reason: str = "manual rollback",
        cause: Exception | None = None,
    ) -> Rollback:
        return self.aliases.rollback_offline(to, reason=reason, cause=cause)

    def champion_history(self) -> list[int]:
        return self.aliases.champion_history()

    def read_pointer(self) -> dict[str, Any] | None:
        return self.aliases.read_pointer()

    def write_pointer(self, version: int, *, synced: bool, backup: str | None = None) -> None:
        self.aliases.write_pointer(version, synced=synced, backup=backup)

    # ------------------------------------------------------------------ backups
    @property
    def backup_dir(self) -> Path:
        return self.backup_store.folder

    def export(self, version: int, target: Path) -> Path:
        return self.backup_store.export(version, target)

    def backup(self, version: int) -> Path:
        return self.backup_store.backup(version)

    def backups(self) -> list[Path]:
        return self.backup_store.all()
