"""``mlmedic adopt``: make a version registered outside mlmedic servable and monitorable.

A version logged with plain MLflow (and perhaps moved to ``@champion`` by hand) has no baseline:
no data contract, no drift reference, no record of which skops types to trust. Serving refuses
it (one event; the old version keeps serving) until a person adopts it: mlmedic then reads the
reference data the person names, learns the contract from it, scores the model on it, computes
the drift reference, and stores all of it with the version (as the run's ``baseline/``
artifacts and version tags), exactly as if mlmedic had registered it. The skops types the
model needs are shown and recorded: adopting is the act of trusting them.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmedic.core.errors import RegistryError, UsageError
from mlmedic.data.contract import DataContract
from mlmedic.data.io import read_table
from mlmedic.data.repair import Repairer
from mlmedic.model.baseline import drift_reference
from mlmedic.model.native import SPEC, adopt_native, model_flavor
from mlmedic.model.registry import TRUSTED_TYPES_TAG
from mlmedic.model.registry.versions import (
    CONTRACT_ARTIFACT,
    DRIFT_PROFILE_ARTIFACT,
    REPAIR_ARTIFACT,
)
from mlmedic.model.tasks import Task, task_of
from mlmedic.model.training import TrainResult, evaluate, model_features, model_frame
from mlmedic.store.events import EventKind, Outcome

if TYPE_CHECKING:
    from mlmedic.model.project import Project

ADOPTED_TAG = "mlmedic.adopted_from"
HOLDOUT_ROWS = 5000


@dataclass
class Adopted:
    """What ``adopt`` stored for a version."""

    version: int
    trusted_types: list[str]
    metrics: dict[str, float]
    features: list[str]
    reference: str
    champion: bool


def adopt(project: Project, version: int, reference: str, *, target: str | None = None) -> Adopted:
    """Adopt ``version`` with ``reference`` as its baseline; ``UsageError`` (exit 2) when the
    version, the data or the model do not fit, ``RegistryError`` when MLflow cannot be read."""
    import mlflow.artifacts

    settings = project.settings.self_healing
    registry = project.registry
    name = registry.model_name
    info = registry.info(version)
    if registry.trusted_types(version) is not None:
        raise UsageError(f"v{version} of '{name}' was registered by mlmedic: nothing to adopt")
    if not info.run_id:
        raise UsageError(
            f"v{version} of '{name}' has no MLflow run to keep its baseline in; log it from a run"
        )
    target = target or settings.data_quality.target_column
    if not target:
        raise UsageError("adopt needs the target column: --target (or data_quality.target_column)")
    frame = read_table(reference)
    if target not in frame.columns:
        raise UsageError(f"{reference}: no target column '{target}'")

    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "model"
        registry.connection.activate()
        registry.connection.call(
            "download the model",
            mlflow.artifacts.download_artifacts,
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(model_dir),
        )
        model, trusted, native = _read(model_dir, version, project, frame, target)

    task = task_of(native["task"] if native else None)
    contract = DataContract(
        target=target,
        outlier_threshold_iqr=settings.data_quality.outlier_threshold_iqr,
        source=str(reference),
        task=task.name,
        target_kind=task.target_kind,
    ).fit(frame)
    naive = task.naive(frame[target])
    wanted, holdout, metrics = _score(model, frame, contract, version, reference, task, naive)
    result = TrainResult(
        model=model,
        metrics=metrics,
        features=wanted,
        holdout=holdout,
        train_rows=0,
        trainer=f"adopted ({type(model).__name__})",
        seconds=0.0,
        naive=naive,
        task=task,
    )
    profile = drift_reference(
        frame,
        contract,
        result,
        window_rows=settings.drift_detection.reference_window_rows,
    )
    statistics = Repairer.from_config(settings.data_quality).fit(contract).statistics()

    _store(registry, info, contract, statistics, profile, metrics, native)
    registry.version_store.set_tag(version, ADOPTED_TAG, str(reference))
    registry.version_store.set_tag(version, TRUSTED_TYPES_TAG, json.dumps(trusted))
    champion = registry.champion()
    is_champion = champion is not None and champion.version == version
    if not is_champion:
        registry.version_store.tag(version, "candidate", "adopted")
    project.events.record(
        EventKind.REGISTER,
        "adopt",
        Outcome.SUCCESS,
        message=f"adopted {name} v{version} with {reference} as its baseline "
        f"(accuracy {metrics.get('accuracy', float('nan')):.3f} on it; trusting "
        f"{len(trusted)} skops type(s))",
        details={
            "reference": str(reference),
            "metrics": metrics,
            "trusted_types": trusted,
            "run_id": info.run_id,
            "adopted_at": time.time(),
        },
        model_version=version,
    )
    return Adopted(
        version=version,
        trusted_types=trusted,
        metrics=metrics,
        features=wanted,
        reference=str(reference),
        champion=is_champion,
    )


def _read(
    model_dir: Path, version: int, project: Project, frame: Any, target: str
) -> tuple[Any, list[str], dict[str, Any] | None]:
    """(the model, the skops types it needs, what a LightGBM/XGBoost model needs stored)."""

    kind, flavor = model_flavor(model_dir)
    if kind == "sklearn":
        return (*_load(model_dir, version, flavor, project), None)
    model, native = adopt_native(model_dir, kind, flavor, version, frame, target)
    return model, [], native  # a LightGBM or XGBoost model as MLflow stored it


def _score(
    model: Any,
    frame: Any,
    contract: Any,
    version: int,
    reference: str,
    task: Task,
    naive: float | None,
) -> tuple[list[str], Any, dict[str, float]]:
    """(the model's features, the holdout it is scored on, its metrics there): the reference
    must give exactly the features the model takes, and labelled rows enough to score it."""

    target = contract.target
    features = model_features(contract)
    names = getattr(model, "feature_names_in_", None)  # scikit-learn's, or a booster's own
    wanted = [
        str(c) for c in (names if names is not None else getattr(model, "features", features))
    ]
    if set(wanted) != set(features):
        missing = sorted(set(wanted) - set(features))
        extra = sorted(set(features) - set(wanted))
        raise UsageError(
            f"v{version} takes {len(wanted)} features; {reference} gives {len(features)}"
            + (f" (the model needs {', '.join(missing[:5])})" if missing else "")
            + (f" (the model does not take {', '.join(extra[:5])})" if extra else "")
        )
    rows = model_frame(frame, contract)[wanted]
    rows[target] = frame[target].to_numpy()
    rows = rows[rows[target].notna()]
    holdout = rows.sample(min(len(rows), HOLDOUT_ROWS), random_state=0).sort_index()
    if len(holdout) < 10:
        raise UsageError(f"{reference}: {len(holdout)} labelled rows; adopt needs at least 10")
    try:
        metrics = evaluate(model, holdout, target, task=task, naive=naive)
    except Exception as exc:  # the person's model on the person's data: say why, not a traceback
        raise UsageError(
            f"v{version} cannot score {reference}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    return wanted, holdout, metrics


def _store(
    registry: Any,
    info: Any,
    contract: Any,
    statistics: dict[str, Any],
    profile: dict[str, Any],
    metrics: dict[str, float],
    native: dict[str, Any] | None = None,
) -> None:
    """The baseline stored with the version's own run (its figures never overwritten)."""

    client = registry.connection.client
    run_id = info.run_id

    def store() -> None:
        client.log_dict(run_id, contract.to_dict(), CONTRACT_ARTIFACT)
        client.log_dict(run_id, statistics, REPAIR_ARTIFACT)
        client.log_dict(run_id, profile, DRIFT_PROFILE_ARTIFACT)
        if native is not None:  # what the cache needs to score a LightGBM/XGBoost model
            client.log_dict(run_id, native, f"baseline/{SPEC}")
        logged = set(info.metrics)
        for key, value in metrics.items():
            if key not in logged:  # the run's own figures are never overwritten
                client.log_metric(run_id, key, value)

    registry.connection.call("store the baseline", store)


def _load(
    model_dir: Path, version: int, flavor: dict[str, Any], project: Project
) -> tuple[Any, list[str]]:
    """The model and the skops types it needs; pickle only when the project opted in."""
    form = str(flavor.get("serialization_format", "")) or "pickle"
    files = sorted(model_dir.rglob("model.skops")) or sorted(model_dir.rglob("model.pkl"))
    if not flavor or not files:
        raise UsageError(f"v{version} is not a scikit-learn model saved by mlflow.sklearn")
    settings = project.settings.self_healing.model_training
    if form != "skops":
        if not settings.allow_pickle_models_executing_code:
            raise UsageError(
                f"v{version} is saved with {form}; loading it would execute the code it carries. "
                "Log it with serialization_format='skops', or set "
                "model_training.allow_pickle_models_executing_code to true if you trust it"
            )
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(model_dir)), []
    import skops.io

    try:
        trusted = sorted(skops.io.get_untrusted_types(file=files[0]))
        model = skops.io.load(files[0], trusted=trusted)
    except Exception as exc:
        raise RegistryError(f"v{version}: cannot read its model file: {exc}") from None
    if not hasattr(model, "predict_proba"):
        raise UsageError(f"v{version} is not a classifier with predict_proba; mlmedic serves those")
    return model, trusted


__all__ = ["ADOPTED_TAG", "Adopted", "adopt"]
