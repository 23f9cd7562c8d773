"""Local copies of registered versions: exports, the backup store and its pruning.

An export is a version's MLflow model directory and baseline with a manifest (metrics, the exact
skops types to trust, the model file's sha256). Backups live in ``.mlmedic/backups/<model>/v<N>/``
and are what an offline rollback serves from; the serving cache is exports too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlmedic.core.errors import RegistryError
from mlmedic.model.local import file_digest, model_file
from mlmedic.model.native import model_flavor, refusal, stored_natively
from mlmedic.model.registry.connection import Connection
from mlmedic.model.registry.versions import TRUSTED_TYPES_TAG, Versions


class BackupStore:
    """Exports versions from the registry and keeps the newest few as backups."""

    def __init__(
        self,
        connection: Connection,
        versions: Versions,
        *,
        clock: Any,
        allow_pickle: bool = False,
        max_backups: int = 10,
        retention_days: float | None = None,
    ) -> None:
        self.connection = connection
        self.versions = versions
        self.clock = clock  # read at each use: a project may swap its clock (simulations)
        self.allow_pickle = allow_pickle
        self.max_backups = max_backups
        self.retention_days = retention_days
        self.folder = connection.state_dir / "backups" / connection.model_name

    def loading_plan(self, version: int, model_dir: Path) -> tuple[str, list[str]]:
        """(serialization format, trusted types) for a downloaded version, or RegistryError."""

        name = self.connection.model_name
        kind, flavor = model_flavor(model_dir)
        if kind != "sklearn":  # LightGBM or XGBoost as MLflow stored it
            if not stored_natively(kind, flavor):
                raise RegistryError(refusal(kind, flavor, version))
            if self.versions.trusted_types(version) is None:
                raise RegistryError(
                    f"v{version} of '{name}' was not registered by mlmedic; adopt it with "
                    f"'mlmedic adopt {version} --reference DATA'"
                )
            return kind, []
        form = str(flavor.get("serialization_format", "skops"))
        if form != "skops" or model_file(model_dir.parent).name != "model.skops":
            if not self.allow_pickle:
                raise RegistryError(
                    f"v{version} of '{name}' is saved with {form}; loading it would "
                    "execute the code it carries. Retrain it with mlmedic (skops), or set "
                    "model_training.allow_pickle_models_executing_code to true if you trust it"
                )
            return form, []
        trusted = self.versions.trusted_types(version)
        if trusted is None:
            raise RegistryError(
                f"v{version} of '{name}' was not registered by mlmedic (no "
                f"{TRUSTED_TYPES_TAG} tag), so its skops types cannot be trusted; adopt it "
                f"with 'mlmedic adopt {version} --reference DATA'"
            )
        return form, trusted

    def export(self, version: int, target: Path) -> Path:
        """Copy a version's MLflow model directory and baseline into ``target`` (atomically), with
        a manifest naming its metrics and the exact skops trusted types needed to load it."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        name = self.connection.model_name
        info = self.versions.info(version)
        self.connection.activate()
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.connection.call(
                "download the model",
                mlflow.artifacts.download_artifacts,
                artifact_uri=f"models:/{name}/{version}",
                dst_path=str(staging / "model"),
            )
            form, trusted = self.loading_plan(version, staging / "model")
            try:
                self.connection.call(
                    "download the baseline",
                    self.connection.client.download_artifacts,
                    info.run_id,
                    "baseline",
                    str(staging),
                )
            except MlflowException as exc:
                raise RegistryError(
                    f"v{version} of '{name}' has no baseline (data contract); it was "
                    f"not registered by mlmedic: adopt it with 'mlmedic adopt {version} "
                    "--reference DATA'"
                ) from exc
            manifest = {
                "model_name": name,
                "version": version,
                "run_id": info.run_id,
                "metrics": info.metrics,
                "trained_at": info.created_at,
                "serialization_format": form,
                "skops_trusted_types": trusted,
                "sha256": file_digest(model_file(staging)),
                "tracking_uri": self.connection.tracking_uri,
                "backed_up_at": self.clock().now(),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def path(self, version: int) -> Path:
        return self.folder / f"v{version}"

    def has(self, version: int) -> bool:
        return (self.path(version) / "model" / "MLmodel").exists()

    def backup(self, version: int) -> Path:
        """Copy a version's model and baseline to the backup store; prune."""
        target = self.export(version, self.path(version))
        self.prune(keep=version)
        return target

    def all(self) -> list[Path]:
        if not self.folder.exists():
            return []
        found = [p for p in self.folder.iterdir() if (p / "manifest.json").exists()]
        return sorted(found, key=lambda p: int(p.name.lstrip("v")))

    def prune(self, keep: int) -> None:
        """Keep the newest ``max_backups`` backups, none older than ``retention_days``
        (the one just made is always kept)."""
        backups = [p for p in self.all() if p.name != f"v{keep}"]
        if self.retention_days is not None:
            oldest = self.clock().now() - self.retention_days * 86_400
            for path in list(backups):
                manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
                if float(manifest.get("backed_up_at", 0)) < oldest:
                    shutil.rmtree(path, ignore_errors=True)
                    backups.remove(path)
        excess = len(backups) + 1 - self.max_backups
        for path in backups[: max(0, excess)]:
            shutil.rmtree(path, ignore_errors=True)


def sklearn_flavor(model_dir: Path) -> dict[str, Any]:
    """The ``sklearn`` flavor of an MLmodel file (read as YAML text, without MLflow's loader)."""
    import yaml

    try:
        data = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{model_dir}: unreadable MLmodel file ({exc})") from exc
    flavor = (data.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        raise RegistryError(f"{model_dir}: not a scikit-learn model (no sklearn flavor)")
    return flavor
