"""The model registry: MLflow, with aliases ``champion`` and ``previous`` and local backups.

Embedded default: a SQLite tracking store and local artifacts under ``.mlmedic/``; any
``MLFLOW_TRACKING_URI`` (an ``mlflow server``, say) works instead. Each version is logged with its
signature, an input example, metrics and parameters, and carries its baseline as run artifacts
(``baseline/contract.json``, ``baseline/repair_statistics.json``; ``baseline/drift_profile.json``
is the slot the monitoring stage fills). Registry stages are deprecated: only aliases are used,
and every alias move is also an event, so the history of who served when is kept.

Models are loaded with skops only, trusting exactly the types mlmedic recorded when it registered
the version (the ``mlmedic.skops_trusted_types`` tag; never the list stored beside the artifact,
which whoever uploads the artifact controls). A pickled version is refused unless the project sets
``model_training.allow_pickle_models_executing_code``. Every operation that moves an alias holds
the project lock (``mlmedic.lock``) and re-reads the champion under it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from mlmedic.data.contract import DataContract
from mlmedic.errors import RegistryError, RegistryUnavailableError
from mlmedic.events import EventKind, EventStore, Outcome
from mlmedic.training import DEFAULT_SKOPS_TRUSTED_TYPES, DEFAULT_TRAINER, TrainResult

CHAMPION = "champion"
PREVIOUS = "previous"
STATUS_TAG = "mlmedic.status"
REASON_TAG = "mlmedic.reason"
TRUSTED_TYPES_TAG = "mlmedic.skops_trusted_types"
POINTER_FILE = "champion.json"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
CONTRACT_ARTIFACT = "baseline/contract.json"
REPAIR_ARTIFACT = "baseline/repair_statistics.json"
DRIFT_PROFILE_ARTIFACT = "baseline/drift_profile.json"

# Fail fast when a tracking server goes away instead of MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


@dataclass
class VersionInfo:
    """One registered version as mlmedic sees it."""

    version: int
    run_id: str | None
    status: str
    aliases: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    created_at: float = 0.0


class Rollback(NamedTuple):
    """A champion move backwards; ``offline`` when it was made from the local backups only."""

    from_version: int
    to_version: int
    offline: bool = False


def default_model_name(root: Path) -> str:
    """A registered-model name from the project directory's name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-.")
    return cleaned or "mlmedic-model"


def read_pointer(state_dir: Path) -> dict[str, Any] | None:
    """``.mlmedic/champion.json``: the champion as this project last knew it (or None)."""
    try:
        return dict(json.loads((Path(state_dir) / POINTER_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own warnings (integer-schema hints, deprecations) are noise for our users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Registry:
    """The registered model of one project, with alias moves recorded as events."""

    def __init__(
        self,
        state_dir: Path,
        events: EventStore,
        *,
        model_name: str,
        tracking_uri: str | None = None,
        max_backups: int = 10,
        backup_retention_days: float | None = None,
        allow_pickle: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.allow_pickle = allow_pickle
        self.events = events
        self.model_name = model_name
        self.max_backups = max_backups
        self.backup_retention_days = backup_retention_days
        if tracking_uri is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or (
                f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"
            )
        self.tracking_uri = tracking_uri
        # a local store (sqlite or a file path) keeps its artifacts in the project, never in
        # whatever directory the command was started from (MLflow's default is ./mlruns)
        self.local = _is_local_store(tracking_uri)
        self.backup_dir = self.state_dir / "backups" / model_name
        self._client: Any = None

    # ------------------------------------------------------------------ connection
    @property
    def client(self) -> Any:
        """The MLflow client, created (and the server checked) on first use."""
        if self._client is None:
            self.check_reachable()
            from mlflow.tracking import MlflowClient

            self.state_dir.mkdir(parents=True, exist_ok=True)
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            self._activate()
            with _quiet():
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            self._sync_pointer()
        return self._client

    def _activate(self) -> None:
        """Point MLflow's process-wide URIs (used by ``models:/`` URIs and runs) at this registry.

        MLflow also writes the URI into the environment, where it would leak into this
        process's later registries and into child processes: the user's value is put back.
        """
        import mlflow

        user_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if user_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = user_uri

    def check_reachable(self, timeout: float = 5.0) -> None:
        """Raise ``RegistryUnavailableError`` unless the tracking server answers ``/health``."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        url = self.tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = str(reason)
        raise RegistryUnavailableError(
            f"MLflow tracking server {self.tracking_uri} is unreachable ({problem}); "
            "start it, or unset MLFLOW_TRACKING_URI to use the project's local registry"
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call, turning connection failures into ``RegistryUnavailableError``."""
        from mlflow.exceptions import MlflowException

        try:
            with _quiet():
                return fn(*args, **kwargs)
        except MlflowException as exc:
            text = str(exc)
            lowered = text.lower()
            if (
                getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
                or "not found" in lowered
                or "does not exist" in lowered
            ):
                raise
            if any(k in text for k in ("Max retries", "Connection", "connect", "timed out")):
                raise RegistryUnavailableError(
                    f"MLflow at {self.tracking_uri} failed while trying to {what}: "
                    f"{text.splitlines()[0][:200]}"
                ) from exc
            raise RegistryError(f"MLflow refused to {what}: {text.splitlines()[0][:300]}") from exc

    def _experiment_id(self) -> str:
        name = f"mlmedic/{self.model_name}"
        experiment = self._call("read the experiment", self.client.get_experiment_by_name, name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = (self.state_dir / "mlartifacts").resolve().as_uri() if self.local else None
        return str(
            self._call(
                "create the experiment",
                self.client.create_experiment,
                name,
                artifact_location=location,
            )
        )

    # ------------------------------------------------------------------ versions
    def _version(self, version: int) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._call(
                "read a model version", self.client.get_model_version, self.model_name, str(version)
            )
        except MlflowException:
            return None

    def info(self, version: int) -> VersionInfo:
        found = self._version(version)
        if found is None:
            raise RegistryError(f"model '{self.model_name}' has no version {version}")
        return self._info(found)

    def _info(self, found: Any) -> VersionInfo:
        tags = dict(found.tags or {})
        metrics: dict[str, float] = {}
        if found.run_id:
            run = self._call("read a run", self.client.get_run, found.run_id)
            metrics = {k: float(v) for k, v in run.data.metrics.items()}
        return VersionInfo(
            version=int(found.version),
            run_id=found.run_id,
            status=tags.get(STATUS_TAG, "unknown"),
            aliases=list(getattr(found, "aliases", []) or []),
            metrics=metrics,
            reason=tags.get(REASON_TAG, ""),
            created_at=float(found.creation_timestamp or 0) / 1000.0,
        )

    def versions(self) -> list[VersionInfo]:
        """Every version of the model, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._call(
                "list model versions",
                self.client.search_model_versions,
                f"name='{self.model_name}'",
            )
        except MlflowException:
            return []
        if not found:
            return []
        # search results carry no aliases; the registered model holds them
        model = self._call("read the model", self.client.get_registered_model, self.model_name)
        aliases: dict[int, list[str]] = {}
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            aliases.setdefault(int(version), []).append(alias)
        infos = []
        for found_version in found:
            info = self._info(found_version)
            info.aliases = sorted(aliases.get(info.version, []))
            infos.append(info)
        return sorted(infos, key=lambda v: v.version)

    def alias(self, alias: str) -> VersionInfo | None:
        """The version an alias points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._call(
                "read an alias", self.client.get_model_version_by_alias, self.model_name, alias
            )
        except MlflowException:
            return None
        return self._info(found)

    def champion(self) -> VersionInfo | None:
        return self.alias(CHAMPION)

    # ------------------------------------------------------------------ logging a candidate
    def log_candidate(
        self,
        result: TrainResult,
        contract: DataContract,
        repair_statistics: dict[str, Any],
        *,
        tags: dict[str, str] | None = None,
        drift_profile: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Log the trained model with signature, example, metrics, params and baseline, and
        register it as a new version tagged ``candidate``."""
        import mlflow
        import mlflow.sklearn
        import numpy as np
        import sklearn
        import skops.io
        from mlflow.models import infer_signature

        experiment_id = self._experiment_id()
        self._activate()
        example = result.holdout[result.features].head(5)
        trusted = self._trusted_types(result)
        requirements = [
            f"mlflow=={mlflow.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"skops=={skops.__version__}",
            f"numpy=={np.__version__}",
            f"pandas=={pd.__version__}",
        ]

        def log() -> Any:
            with mlflow.start_run(experiment_id=experiment_id, run_name="mlmedic-train") as run:
                mlflow.log_params(result.params)
                mlflow.log_metrics(result.metrics)
                mlflow.set_tags({"mlmedic.trainer": result.trainer, **(tags or {})})
                mlflow.log_dict(contract.to_dict(), CONTRACT_ARTIFACT)
                mlflow.log_dict(repair_statistics, REPAIR_ARTIFACT)
                if drift_profile is not None:
                    mlflow.log_dict(drift_profile, DRIFT_PROFILE_ARTIFACT)
                signature = infer_signature(example, np.asarray(result.model.predict(example)))
                info = mlflow.sklearn.log_model(
                    result.model,
                    name="model",
                    signature=signature,
                    input_example=example,
                    serialization_format="skops",
                    skops_trusted_types=trusted,
                    pip_requirements=requirements,
                    registered_model_name=self.model_name,
                )
                return run.info.run_id, info

        # MLflow prints "Created version ..." and "View run at ..." lines of its own
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            run_id, info = self._call("log and register the model", log)
        version = int(info.registered_model_version)
        self._set_tag(version, TRUSTED_TYPES_TAG, json.dumps(trusted))
        self._tag(version, "candidate")
        self.events.record(
            EventKind.REGISTER,
            "register",
            Outcome.SUCCESS,
            message=f"registered {self.model_name} v{version} (run {run_id[:8]})",
            details={
                "run_id": run_id,
                "metrics": result.metrics,
                "tracking_uri": self.tracking_uri,
            },
            model_version=version,
        )
        return self.info(version)

    def _trusted_types(self, result: TrainResult) -> list[str]:
        """The exact non-default types the model needs to load with skops."""
        if result.trainer == DEFAULT_TRAINER:
            return list(DEFAULT_SKOPS_TRUSTED_TYPES)
        import skops.io

        try:
            return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(result.model)))
        except Exception as exc:
            raise RegistryError(
                f"trainer '{result.trainer}': its model cannot be saved safely with skops "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    # ------------------------------------------------------------------ loading
    def trusted_types(self, version: int) -> list[str] | None:
        """The skops types mlmedic recorded for ``version`` when it registered it (or None)."""
        found = self._version(version)
        text = dict(getattr(found, "tags", None) or {}).get(TRUSTED_TYPES_TAG)
        if text is None:
            return None
        try:
            return [str(t) for t in json.loads(text)]
        except (ValueError, TypeError):
            return None

    def _loading_plan(self, version: int, model_dir: Path) -> tuple[str, list[str]]:
        """(serialization format, trusted types) for a downloaded version, or RegistryError."""
        from mlmedic.serving.model import model_file

        flavor = _sklearn_flavor(model_dir)
        form = str(flavor.get("serialization_format", "skops"))
        if form != "skops" or model_file(model_dir.parent).name != "model.skops":
            if not self.allow_pickle:
                raise RegistryError(
                    f"v{version} of '{self.model_name}' is saved with {form}; loading it would "
                    "execute the code it carries. Retrain it with mlmedic (skops), or set "
                    "model_training.allow_pickle_models_executing_code to true if you trust it"
                )
            return form, []
        trusted = self.trusted_types(version)
        if trusted is None:
            raise RegistryError(
                f"v{version} of '{self.model_name}' was not registered by mlmedic (no "
                f"{TRUSTED_TYPES_TAG} tag), so its skops types cannot be trusted; register it "
                "with 'mlmedic run'"
            )
        return form, trusted

    def load_model(self, version: int) -> Any:
        """The scikit-learn model of a version (from this project's registry only), loaded with
        skops and the types mlmedic recorded for it; pickle only when the project opted in."""
        with tempfile.TemporaryDirectory() as folder:
            exported = self.export(version, Path(folder) / "version")
            from mlmedic.serving.model import load_local

            try:
                return load_local(exported, version, allow_pickle=self.allow_pickle).model
            except Exception as exc:
                raise RegistryError(f"cannot load v{version}: {exc}") from exc

    def load_drift_profile(self, version: int) -> dict[str, Any] | None:
        """The version's drift reference (features and predictions), if it was stored."""
        from mlflow.exceptions import MlflowException

        info = self.info(version)
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self._call(
                    "download the drift profile",
                    self.client.download_artifacts,
                    info.run_id,
                    DRIFT_PROFILE_ARTIFACT,
                    folder,
                )
            except MlflowException as exc:
                # only "it was never stored" means no profile; an unreachable artifact store
                # is a RegistryUnavailableError (exit 3), raised by _call, not "retrain it"
                if getattr(exc, "error_code", "") in _NOT_FOUND:
                    return None
                raise RegistryError(
                    f"cannot read v{version}'s drift profile: {str(exc).splitlines()[0][:200]}"
                ) from exc
            return dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def load_contract(self, version: int) -> DataContract:
        info = self.info(version)
        with tempfile.TemporaryDirectory() as folder:
            path = self._call(
                "download the contract",
                self.client.download_artifacts,
                info.run_id,
                CONTRACT_ARTIFACT,
                folder,
            )
            return DataContract.load(path)

    # ------------------------------------------------------------------ aliases
    def _set_alias(self, alias: str, version: int | None, reason: str) -> None:
        before = self.alias(alias)
        old = before.version if before else None
        if old == version:
            return
        if version is None:
            self._call(
                "delete an alias", self.client.delete_registered_model_alias, self.model_name, alias
            )
        else:
            self._call(
                "move an alias",
                self.client.set_registered_model_alias,
                self.model_name,
                alias,
                str(version),
            )
        if alias == CHAMPION and version is not None:
            self._warm_serving_cache(version)
            self.write_pointer(version, synced=True)
        self._record_move(alias, old, version, reason)

    def _warm_serving_cache(self, version: int) -> None:
        """Export a new champion for the servers before they are told about it, so a running
        server swaps from a local copy without touching MLflow."""
        target = self.state_dir / "serving-cache" / f"v{version}"
        if (target / "manifest.json").exists():
            return
        try:
            self.export(version, target)
        except Exception as exc:  # the servers fall back to the registry themselves
            logging.getLogger("mlmedic.registry").warning("cannot pre-export v%s: %s", version, exc)

    def _record_move(
        self, alias: str, old: int | None, new: int | None, reason: str, *, offline: bool = False
    ) -> None:
        """Every alias move is an event; the champion history is read back from them."""
        details: dict[str, Any] = {"alias": alias, "from": old, "to": new, "reason": reason}
        if offline:
            details["offline"] = True
        self.events.record(
            EventKind.ALIAS,
            f"{alias} {'removed' if new is None else 'set'}{' (offline)' if offline else ''}",
            Outcome.SUCCESS,
            message=f"{alias}: {_v(old)} -> {_v(new)}"
            + (" (local backup; registry pending)" if offline else ""),
            details=details,
            model_version=new,
        )

    def _record_rollback(self, old: int, new: int, reason: str, **extra: Any) -> None:
        offline = bool(extra.get("offline"))
        self.events.record(
            EventKind.ROLLBACK,
            "rollback (offline)" if offline else "rollback",
            Outcome.SUCCESS,
            message=f"rolled back v{old} -> v{new}"
            + (" from the local backup" if offline else "")
            + f": {reason}",
            details={"from_version": old, "to_version": new, "reason": reason, **extra},
            model_version=new,
        )

    def _set_tag(self, version: int, key: str, value: str) -> None:
        self._call(
            "tag the version",
            self.client.set_model_version_tag,
            self.model_name,
            str(version),
            key,
            value,
        )

    def _tag(self, version: int, status: str, reason: str = "") -> None:
        self._set_tag(version, STATUS_TAG, status)
        if reason:
            self._set_tag(version, REASON_TAG, reason)

    def tag_gate(self, version: int, decision: dict[str, Any]) -> None:
        """The gate's numbers as version tags (``mlmedic.gate.*``)."""
        for key, value in decision.items():
            text = value if isinstance(value, str) else json.dumps(value)
            self._set_tag(version, f"mlmedic.gate.{key}", text)

    def promote(self, version: int, reason: str) -> VersionInfo | None:
        """Make ``version`` the champion; the old champion becomes ``previous``. Returns it."""
        old = self.champion()
        if old is not None and old.version != version:
            self._set_alias(PREVIOUS, old.version, f"v{version} became champion")
            self._tag(old.version, "retired")
        self._set_alias(CHAMPION, version, reason)
        self._tag(version, "champion", reason)
        return old

    def reject(self, version: int, reason: str) -> None:
        """Keep a failed candidate in the registry, tagged rejected, never served."""
        self._tag(version, "rejected", reason)

    def _previous_after_rollback(self, current: int, target: int) -> int | None:
        """After rolling back from ``current`` to ``target``, ``previous`` is the version that
        was champion just before ``target`` last became champion."""
        history = [v for v in self.champion_history() if v != current]
        earlier = history[: _last_index(history, target)]
        before_target = [v for v in earlier if v != target]
        return before_target[-1] if before_target else None

    def _alias_from_events(self, alias: str) -> int | None:
        """Where ``alias`` last pointed, according to the event store."""
        moves = [
            e for e in self.events.query(kind=EventKind.ALIAS) if e.details.get("alias") == alias
        ]
        if not moves:
            return None
        last = moves[-1].details.get("to")
        return None if last is None else int(last)

    def champion_history(self) -> list[int]:
        """The versions that were champion, in order (from the event store)."""
        history: list[int] = []
        for event in self.events.query(kind=EventKind.ALIAS):
            if event.details.get("alias") == CHAMPION and event.details.get("to") is not None:
                history.append(int(event.details["to"]))
        return history

    def rollback(self, to: int | None = None, *, reason: str = "manual rollback") -> Rollback:
        """Move the champion back to ``previous`` (or to version ``to``).

        Refuses a version that does not exist or was rejected, and a rollback with nowhere to go.
        When the tracking server is unreachable, rolls back from the local backups instead (see
        ``rollback_offline``).
        """
        from mlmedic.lock import project_lock

        with project_lock(self.state_dir, f"rollback ({reason})"):
            try:
                return self._rollback_online(to, reason)
            except RegistryUnavailableError as exc:
                return self.rollback_offline(to, reason=reason, cause=exc)

    def _no_previous(self, champion: int) -> RegistryError:
        return RegistryError(
            f"model '{self.model_name}' has no previous version to roll back to "
            f"(champion is v{champion})"
        )

    def _rollback_online(self, to: int | None, reason: str) -> Rollback:
        current = self.champion()
        if current is None:
            raise RegistryError(f"model '{self.model_name}' has no champion to roll back from")
        if to is None:
            previous = self.alias(PREVIOUS)
            if previous is None:
                raise self._no_previous(current.version)
            target = previous
        else:
            target = self.info(to)
        if target.status == "rejected":
            raise RegistryError(
                f"v{target.version} was rejected by the gate ({target.reason or 'no reason'}); "
                "refusing to serve it"
            )
        if target.status == "candidate":
            raise RegistryError(f"v{target.version} never passed the gate; refusing to serve it")
        if target.version == current.version:
            raise RegistryError(f"v{target.version} is already the champion")
        new_previous = self._previous_after_rollback(current.version, target.version)
        self._set_alias(CHAMPION, target.version, reason)
        self._tag(target.version, "champion", reason)
        self._tag(current.version, "rolled-back", reason)
        self._set_alias(PREVIOUS, new_previous, f"rollback to v{target.version}")
        self._record_rollback(current.version, target.version, reason)
        return Rollback(current.version, target.version)

    # ------------------------------------------------------------------ offline rollback
    @property
    def pointer_path(self) -> Path:
        """``.mlmedic/champion.json``: the champion as this project last knew it."""
        return self.state_dir / POINTER_FILE

    def read_pointer(self) -> dict[str, Any] | None:
        return read_pointer(self.state_dir)

    def write_pointer(self, version: int, *, synced: bool, backup: str | None = None) -> None:
        """The only writer of ``.mlmedic/champion.json`` (atomic: write, then rename)."""
        record = {
            "model_name": self.model_name,
            "version": version,
            "tracking_uri": self.tracking_uri,
            "synced": synced,
            "backup": backup,
            "updated_at": self.events.clock.now(),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.pointer_path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=2), encoding="utf-8")
        temporary.replace(self.pointer_path)

    def rollback_offline(
        self,
        to: int | None = None,
        *,
        reason: str = "manual rollback",
        cause: Exception | None = None,
    ) -> Rollback:
        """Roll back with the registry unreachable: point ``.mlmedic/champion.json`` at the local
        backup of the target version. The registry's aliases follow on the next connection."""
        why = f" ({cause})" if cause else ""
        pointer = self.read_pointer()
        if pointer is None or pointer.get("model_name") != self.model_name:
            raise RegistryUnavailableError(
                f"cannot roll back: the registry is unreachable{why} and this project has no "
                "local record of its champion"
            )
        current = int(pointer["version"])
        if to is None:
            previous = self._alias_from_events(PREVIOUS)
            if previous is None:
                raise self._no_previous(current)
            target = previous
        else:
            target = to
        rejected = {
            int(e.model_version)
            for e in self.events.query(kind=EventKind.GATE, outcome=Outcome.FAILURE)
            if e.model_version is not None
        }
        if target in rejected:
            raise RegistryError(f"v{target} was rejected by the gate; refusing to serve it")
        if target == current:
            raise RegistryError(f"v{target} is already the champion")
        backup = self.backup_dir / f"v{target}"
        if not (backup / "model" / "MLmodel").exists():
            raise RegistryUnavailableError(
                f"cannot roll back to v{target}: the registry is unreachable{why} and there is no "
                f"local backup of v{target} in {self.backup_dir}"
            )
        new_previous = self._previous_after_rollback(current, target)
        self.write_pointer(target, synced=False, backup=str(backup))
        self._record_move(PREVIOUS, target, new_previous, reason, offline=True)
        self._record_move(CHAMPION, current, target, reason, offline=True)
        self._record_rollback(
            current, target, reason, offline=True, backup=str(backup), registry="pending"
        )
        return Rollback(current, target, offline=True)

    def _sync_pointer(self) -> None:
        """After an offline rollback, move the registry's aliases to match the local champion."""
        pointer = self.read_pointer()
        if (
            not pointer
            or pointer.get("synced", True)
            or pointer.get("model_name") != self.model_name
        ):
            return
        target = int(pointer["version"])
        current = self.champion()
        if current is None or current.version != target:
            previous = self._alias_from_events(PREVIOUS)
            self._set_alias(CHAMPION, target, "sync of an offline rollback")
            self._tag(target, "champion", "offline rollback")
            if current is not None:
                self._tag(current.version, "rolled-back", "offline rollback")
            self._set_alias(PREVIOUS, previous, "sync of an offline rollback")
        self.write_pointer(target, synced=True)

    # ------------------------------------------------------------------ backups
    def export(self, version: int, target: Path) -> Path:
        """Copy a version's MLflow model directory and baseline into ``target`` (atomically), with
        a manifest naming its metrics and the exact skops trusted types needed to load it."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        from mlmedic.serving.model import file_digest, model_file

        info = self.info(version)
        self._activate()
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._call(
                "download the model",
                mlflow.artifacts.download_artifacts,
                artifact_uri=f"models:/{self.model_name}/{version}",
                dst_path=str(staging / "model"),
            )
            form, trusted = self._loading_plan(version, staging / "model")
            try:
                self._call(
                    "download the baseline",
                    self.client.download_artifacts,
                    info.run_id,
                    "baseline",
                    str(staging),
                )
            except MlflowException as exc:
                raise RegistryError(
                    f"v{version} of '{self.model_name}' has no baseline (data contract); it was "
                    "not registered by mlmedic: register it with 'mlmedic run'"
                ) from exc
            manifest = {
                "model_name": self.model_name,
                "version": version,
                "run_id": info.run_id,
                "metrics": info.metrics,
                "trained_at": info.created_at,
                "serialization_format": form,
                "skops_trusted_types": trusted,
                "sha256": file_digest(model_file(staging)),
                "tracking_uri": self.tracking_uri,
                "backed_up_at": self.events.clock.now(),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def backup(self, version: int) -> Path:
        """Copy a version's model and baseline to ``.mlmedic/backups/<model>/v<N>/``; prune."""
        target = self.export(version, self.backup_dir / f"v{version}")
        self._prune(keep=version)
        return target

    def backups(self) -> list[Path]:
        if not self.backup_dir.exists():
            return []
        found = [p for p in self.backup_dir.iterdir() if (p / "manifest.json").exists()]
        return sorted(found, key=lambda p: int(p.name.lstrip("v")))

    def _prune(self, keep: int) -> None:
        """Keep the newest ``max_backups`` backups, none older than ``backup_retention_days``
        (the one just made is always kept)."""
        backups = [p for p in self.backups() if p.name != f"v{keep}"]
        if self.backup_retention_days is not None:
            oldest = self.events.clock.now() - self.backup_retention_days * 86_400
            for path in list(backups):
                manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
                if float(manifest.get("backed_up_at", 0)) < oldest:
                    shutil.rmtree(path, ignore_errors=True)
                    backups.remove(path)
        excess = len(backups) + 1 - self.max_backups
        for path in backups[: max(0, excess)]:
            shutil.rmtree(path, ignore_errors=True)


def _sklearn_flavor(model_dir: Path) -> dict[str, Any]:
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


def _is_local_store(uri: str) -> bool:
    """A tracking URI whose default artifact root would be a relative local folder."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else "file"
    return scheme in ("sqlite", "file", "postgresql", "mysql", "mssql") or len(scheme) == 1


def _v(version: int | None) -> str:
    return "(none)" if version is None else f"v{version}"


def _last_index(values: list[int], value: int) -> int:
    for position in range(len(values) - 1, -1, -1):
        if values[position] == value:
            return position
    return len(values)
