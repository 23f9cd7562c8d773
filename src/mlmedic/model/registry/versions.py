"""The registered versions of one model: reading them, tagging them, logging a new one.

Each version is logged with its signature, an input example, metrics and parameters, and carries
its baseline as run artifacts (``baseline/contract.json``, ``baseline/repair_statistics.json``,
``baseline/drift_profile.json``). A version's status is its ``mlmedic.status`` tag, except that the
aliases win: whoever holds ``champion`` is shown as the champion, and a version tagged champion
that no longer holds the alias (moved in MLflow's UI, say) is shown as retired.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmedic.core.errors import RegistryError
from mlmedic.data.contract import DataContract
from mlmedic.model.registry.connection import (
    ALIAS_MISSING_CODES,
    Connection,
    error_code,
    is_not_found,
)
from mlmedic.model.registry.flavor import ClassifierFlavor, native_requirements
from mlmedic.model.training import DEFAULT_SKOPS_TRUSTED_TYPES, DEFAULT_TRAINER
from mlmedic.store.events import EventKind, EventLog, Outcome

if TYPE_CHECKING:  # training imports scikit-learn: a watcher that only reads aliases never needs it
    from mlmedic.model.training import TrainResult

CHAMPION = "champion"
PREVIOUS = "previous"
STATUS_TAG = "mlmedic.status"
REASON_TAG = "mlmedic.reason"
TRUSTED_TYPES_TAG = "mlmedic.skops_trusted_types"
CONTRACT_ARTIFACT = "baseline/contract.json"
REPAIR_ARTIFACT = "baseline/repair_statistics.json"
DRIFT_PROFILE_ARTIFACT = "baseline/drift_profile.json"
MONITORING_RUN_TAG = "mlmedic.monitoring_run"
# when the status tag was last written, and when the version last became champion (seconds, in
# the event store's time): what a recreated event store restores its history from
STATUS_AT_TAG = "mlmedic.status_at"
DEPLOYED_AT_TAG = "mlmedic.deployed_at"
RETRAIN_TAG = "mlmedic.retrain"  # a monitor's retrain that made this candidate (JSON)


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
    tags: dict[str, str] = field(default_factory=dict)


def effective_status(tagged: str, aliases: list[str]) -> str:
    """The status to show: the champion alias outranks the tag mlmedic last wrote."""
    if CHAMPION in aliases:
        return "champion"
    if tagged == "champion":
        return "retired"
    return tagged


class Versions:
    """Reads and tags the versions of ``connection.model_name``."""

    def __init__(self, connection: Connection, events: EventLog) -> None:
        self.connection = connection
        self.events = events

    @property
    def model_name(self) -> str:
        return self.connection.model_name

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.connection.call(what, fn, *args, **kwargs)

    def _get(self, version: int) -> Any | None:
        from mlflow.exceptions import MlflowException

        client = self.connection.client
        try:
            return self._call(
                "read a model version", client.get_model_version, self.model_name, str(version)
            )
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise

    def info(self, version: int) -> VersionInfo:
        found = self._get(version)
        if found is None:
            raise RegistryError(f"model '{self.model_name}' has no version {version}")
        return self._info(found)

    def _info(self, found: Any, aliases: list[str] | None = None) -> VersionInfo:
        tags = dict(found.tags or {})
        metrics: dict[str, float] = {}
        if found.run_id:
            run = self._call("read a run", self.connection.client.get_run, found.run_id)
            metrics = {k: float(v) for k, v in run.data.metrics.items()}
        held = sorted(aliases if aliases is not None else (getattr(found, "aliases", []) or []))
        return VersionInfo(
            version=int(found.version),
            run_id=found.run_id,
            status=effective_status(tags.get(STATUS_TAG, "unknown"), held),
            aliases=held,
            metrics=metrics,
            reason=tags.get(REASON_TAG, ""),
            created_at=float(found.creation_timestamp or 0) / 1000.0,
            tags=tags,
        )

    def all(self) -> list[VersionInfo]:
        """Every version of the model, oldest first."""
        from mlflow.exceptions import MlflowException

        client = self.connection.client
        try:
            found = self._call(
                "list model versions", client.search_model_versions, f"name='{self.model_name}'"
            )
        except MlflowException as exc:
            if is_not_found(exc):
                return []
            raise
        if not found:
            return []
        # search results carry no aliases; the registered model holds them
        model = self._call("read the model", client.get_registered_model, self.model_name)
        aliases: dict[int, list[str]] = {}
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            aliases.setdefault(int(version), []).append(alias)
        infos = [self._info(v, aliases.get(int(v.version), [])) for v in found]
        return sorted(infos, key=lambda v: v.version)

    def alias(self, alias: str) -> VersionInfo | None:
        """The version an alias points at, or None."""
        from mlflow.exceptions import MlflowException

        client = self.connection.client
        try:
            found = self._call(
                "read an alias",
                client.get_model_version_by_alias,
                self.model_name,
                alias,
                missing=ALIAS_MISSING_CODES,
            )
        except MlflowException as exc:
            if error_code(exc) in ALIAS_MISSING_CODES:
                return None
            raise
        return self._info(found)

    # ------------------------------------------------------------------ tags
    def set_tag(self, version: int, key: str, value: str) -> None:
        self._call(
            "tag the version",
            self.connection.client.set_model_version_tag,
            self.model_name,
            str(version),
            key,
            value,
        )

    def tag(self, version: int, status: str, reason: str = "") -> None:
        now = f"{self.events.clock.now():.3f}"
        self.set_tag(version, STATUS_TAG, status)
        self.set_tag(version, STATUS_AT_TAG, now)
        if status == CHAMPION:
            self.set_tag(version, DEPLOYED_AT_TAG, now)
        if reason:
            self.set_tag(version, REASON_TAG, reason)

    def tag_gate(self, version: int, decision: dict[str, Any], summary: str = "") -> None:
        """The gate's numbers as version tags (``mlmedic.gate.*``), and its verdict as the
        version's description (what the MLflow UI shows beside it)."""
        for key, value in decision.items():
            text = value if isinstance(value, str) else json.dumps(value)
            self.set_tag(version, f"mlmedic.gate.{key}", text)
        if summary:
            self._call(
                "describe the version",
                lambda: self.connection.client.update_model_version(
                    self.model_name, str(version), description=f"mlmedic gate: {summary}"
                ),
            )

    def trusted_types(self, version: int) -> list[str] | None:
        """The skops types mlmedic recorded for ``version`` when it registered it (or None)."""
        found = self._get(version)
        text = dict(getattr(found, "tags", None) or {}).get(TRUSTED_TYPES_TAG)
        if text is None:
            return None
        try:
            return [str(t) for t in json.loads(text)]
        except (ValueError, TypeError):
            return None

    # ------------------------------------------------------------------ monitoring history
    def log_pass(
        self,
        version: int,
        *,
        metrics: dict[str, float],
        report: dict[str, Any],
        html: str,
        at: float,
    ) -> str:
        """One monitoring pass of ``version`` in the MLflow run that keeps its monitoring history
        (``monitor vN``, created at the first pass and linked from the version's
        ``mlmedic.monitoring_run`` tag): metrics at step = the pass's time in seconds, the
        report as ``monitoring/<time>.json`` and ``.html``. Returns the run id."""
        from mlflow.entities import Metric

        client = self.connection.client

        def log() -> str:
            found = self._get(version)
            run_id = dict(getattr(found, "tags", None) or {}).get(MONITORING_RUN_TAG)
            if not run_id:
                run = client.create_run(
                    self.connection.experiment_id(),
                    run_name=f"monitor v{version}",
                    tags={"mlmedic.monitoring_of": f"{self.model_name} v{version}"},
                )
                run_id = run.info.run_id
                client.set_terminated(run_id)
                client.set_model_version_tag(
                    self.model_name, str(version), MONITORING_RUN_TAG, run_id
                )
            stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(at))
            millis, step = int(at * 1000), int(at)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), millis, step) for k, v in metrics.items()],
            )
            client.log_dict(run_id, report, f"monitoring/{stamp}.json")
            client.log_text(run_id, html, f"monitoring/{stamp}.html")
            return str(run_id)

        return str(self._call("log the monitoring pass", log))

    # ------------------------------------------------------------------ artifacts
    def _download(self, version: int, artifact: str, folder: str) -> str:
        info = self.info(version)
        return str(
            self._call(
                f"download {artifact}",
                self.connection.client.download_artifacts,
                info.run_id,
                artifact,
                folder,
            )
        )

    def load_drift_profile(self, version: int) -> dict[str, Any] | None:
        """The version's drift reference (features and predictions), if it was stored."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self._download(version, DRIFT_PROFILE_ARTIFACT, folder)
            except (MlflowException, FileNotFoundError) as exc:
                # only "it was never stored" means no profile; an unreachable artifact store
                # is a RegistryUnavailableError (exit 3), raised by the connection, not "retrain"
                if isinstance(exc, FileNotFoundError) or is_not_found(exc):
                    return None
                raise RegistryError(
                    f"cannot read v{version}'s drift profile: {str(exc).splitlines()[0][:200]}"
                ) from exc
            return dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def load_contract(self, version: int) -> DataContract:
        with tempfile.TemporaryDirectory() as folder:
            return DataContract.load(self._download(version, CONTRACT_ARTIFACT, folder))

    # ------------------------------------------------------------------ a new version
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
        """Log the trained model with signature, example, metrics, params and baseline, and
        register it as a new version tagged ``candidate``. ``dataset``: the training frame
        and where it came from, logged as the run's MLflow input; ``raw``: the input as it was
        read (the signature takes its column types, so that plain MLflow scores the file the
        model was trained from); the run is named ``train vN (reason)``."""
        import mlflow
        import mlflow.sklearn
        import numpy as np
        from mlflow.models import Model, ModelSignature, infer_signature
        from mlflow.types import ParamSchema, ParamSpec

        experiment_id = self.connection.experiment_id()
        self.connection.activate()
        inputs = input_schema(result.features, contract, raw)
        example = (
            result.holdout[result.features]
            .head(5)
            .astype({c.name: np.float64 for c in inputs.inputs if c.type.name == "double"})
        )
        trusted = _trusted_types(result)
        own_tags = {"mlmedic.trainer": result.trainer, "mlmedic.task": contract.task}
        requirements = _requirements(result.model)

        def log() -> Any:
            with mlflow.start_run(experiment_id=experiment_id, run_name="mlmedic-train") as run:
                mlflow.log_params({**result.params, "target": contract.target})
                mlflow.log_params(_hyperparameters(result.model))
                mlflow.log_metrics(result.metrics)
                if dataset is not None:
                    _log_dataset(*dataset, target=contract.target)
                mlflow.set_tags({**own_tags, **(tags or {})})
                mlflow.log_dict(contract.to_dict(), CONTRACT_ARTIFACT)
                mlflow.log_dict(repair_statistics, REPAIR_ARTIFACT)
                if drift_profile is not None:
                    mlflow.log_dict(drift_profile, DRIFT_PROFILE_ARTIFACT)
                outputs = infer_signature(example, np.asarray(result.model.predict(example)))
                signature = ModelSignature(
                    inputs=inputs,
                    outputs=outputs.outputs,
                    params=ParamSchema([ParamSpec("output", "string", "labels")]),
                )
                info = Model.log(
                    artifact_path=None,
                    flavor=ClassifierFlavor,
                    sk_model=result.model,
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
        self._call(  # named by what it is, in the MLflow UI
            "name the run",
            lambda: self.connection.client.update_run(run_id, name=f"train v{version} ({reason})"),
        )
        self.set_tag(version, TRUSTED_TYPES_TAG, json.dumps(trusted))
        self.set_tag(version, "mlmedic.task", contract.task)
        self.tag(version, "candidate")
        self.events.record(
            EventKind.REGISTER,
            "register",
            Outcome.SUCCESS,
            message=f"registered {self.model_name} v{version} (run {run_id[:8]})",
            details={
                "run_id": run_id,
                "metrics": result.metrics,
                "tracking_uri": self.connection.tracking_uri,
            },
            model_version=version,
        )
        return self.info(version)


def input_schema(features: list[str], contract: DataContract, raw: Any = None) -> Any:
    """The signature's inputs: categories as ``string``; numbers as ``long`` only where the input
    the model was trained from held integers (an integer dtype, no missing values), ``double``
    otherwise — a CSV column of whole numbers read as float64 (``12.0``, or with gaps) must be
    scorable through plain MLflow, and JSON whole numbers are cast to ``double`` by
    ``mlflow models serve``."""
    import pandas as pd
    from mlflow.types import ColSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = []
    for name in features:
        spec = contract.columns_[name]
        if spec.kind != "numeric":
            columns.append(ColSpec("string", name))
            continue
        held_integers = (
            raw is not None
            and name in raw.columns
            and pd.api.types.is_integer_dtype(raw[name])
            and spec.integer
        )
        columns.append(ColSpec("long" if held_integers else "double", name))
    return Schema(columns)


def _requirements(model: Any) -> list[str]:
    """The pinned packages the logged model needs (its library too, for a booster)."""
    import mlflow
    import numpy as np
    import pandas as pd
    import sklearn
    import skops

    pinned = [("mlflow", mlflow), ("scikit-learn", sklearn), ("skops", skops), ("numpy", np)]
    pinned.append(("pandas", pd))
    return [f"{name}=={module.__version__}" for name, module in pinned] + native_requirements(model)


def _trusted_types(result: TrainResult) -> list[str]:
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


def _hyperparameters(model: Any, limit: int = 100) -> dict[str, Any]:
    """The model's own parameters (``get_params``, nested steps included) with simple values,
    as ``model.<name>`` params: what an MLflow user compares runs by."""
    getter = getattr(model, "get_params", None)
    if getter is None:
        return {}
    try:
        found = getter(deep=True)
    except Exception:  # a trainer's own estimator may not support deep params
        return {}
    simple = {
        f"model.{key}": value
        for key, value in sorted(found.items())
        if value is None or isinstance(value, bool | int | float | str)
    }
    return dict(list(simple.items())[:limit])


def _log_dataset(frame: Any, source: str, *, target: str | None) -> None:
    """The training data as the run's MLflow input (source, digest, rows, schema)."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    name = source.rstrip("/").rsplit("/", 1)[-1] or "training data"
    try:
        dataset = from_pandas(frame, source=source, targets=target, name=name)
    except Exception:  # a source MLflow cannot resolve (a data frame, an unknown scheme)
        dataset = from_pandas(frame, targets=target, name=name)
    mlflow.log_input(dataset, context="training")
