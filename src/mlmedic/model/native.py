"""LightGBM and XGBoost models that MLflow stored in their own formats (``mlflow.lightgbm`` with a
``Booster``: ``model.lgb``, LightGBM's text model; ``mlflow.xgboost``: ``model.ubj``, ``.json``
or ``.xgb``): which flavor a downloaded model has, whether it is stored natively, and the
``NativeBooster`` mlmedic scores it as (``adopt`` reads one; the cache loads it with the
``baseline/native.json`` adopt stored beside the version).

A model stored with pickle or cloudpickle (``mlflow.lightgbm`` with a scikit-learn API model) is
refused, as a pickled scikit-learn model is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlmedic.core.errors import RegistryError, UsageError
from mlmedic.model.mlmedic_pyfunc import NativeBooster
from mlmedic.model.tasks import task_of

NATIVE_FILES = ("model.lgb", "model.ubj", "model.json", "model.xgb")
SPEC = "native.json"  # in the version's baseline/: library, features, categories, classes


def model_flavor(model_dir: Path) -> tuple[str, dict[str, Any]]:
    """("sklearn" | "lightgbm" | "xgboost", its flavor) from an MLmodel file, read as YAML."""
    import yaml

    try:
        data = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{model_dir}: unreadable MLmodel file ({exc})") from exc
    flavors = data.get("flavors") or {}
    for kind in ("sklearn", "lightgbm", "xgboost"):
        if isinstance(flavors.get(kind), dict):
            return kind, flavors[kind]
    raise RegistryError(
        f"{model_dir}: not a scikit-learn, LightGBM or XGBoost model (flavors: "
        f"{', '.join(flavors) or 'none'})"
    )


def stored_natively(kind: str, flavor: dict[str, Any]) -> bool:
    """A LightGBM ``Booster`` in LightGBM's text format, or any XGBoost model in its own."""
    data = str(flavor.get("data", ""))
    if kind == "lightgbm":
        return data.endswith(".lgb")
    return kind == "xgboost" and data.endswith((".ubj", ".json", ".xgb"))


def refusal(kind: str, flavor: dict[str, Any], version: int) -> str:
    """The line for a LightGBM model MLflow pickled."""
    form = flavor.get("serialization_format") or "pickle"
    return (
        f"v{version} is saved with {form}; loading it would execute the code it carries. Log "
        f"the Booster itself (model.booster_) with mlflow.{kind}, which stores it in LightGBM's "
        "own format"
    )


def native_bytes(path: Path) -> Any:
    """The stored model as its library reads it (LightGBM: text; XGBoost: bytes)."""
    return path.read_text(encoding="utf-8") if path.suffix == ".lgb" else path.read_bytes()


def read_booster(kind: str, path: Path) -> Any:
    """The library's own booster from the stored file."""
    if kind == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(path))
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(path))
    return booster


def describe(kind: str, booster: Any) -> tuple[list[str], dict[str, list[Any]], str, int]:
    """(features, categories of the categorical ones, task, classes the booster scores)."""
    if kind == "lightgbm":
        features = [str(f) for f in booster.feature_name()]
        objective = str(booster.dump_model().get("objective", "regression"))
        classes = int(booster.dump_model().get("num_class", 1))
        kept = booster.pandas_categorical or []
        positions = _categorical_positions(booster)
        if len(kept) != len(positions):
            raise RegistryError(
                "the LightGBM model has categorical features but not their categories "
                "(train it on pandas categoricals so that the model keeps them)"
            )
        categories = {
            features[p]: [str(c) for c in values] for p, values in zip(positions, kept, strict=True)
        }
        task = "classification" if objective.startswith(("binary", "multiclass")) else "regression"
        return features, categories, task, 2 if objective.startswith("binary") else classes
    config = json.loads(booster.save_config())
    objective = str(config["learner"]["objective"]["name"])
    features = [str(f) for f in booster.feature_names or []]
    if not features:
        raise RegistryError("the XGBoost model does not name its features; train it on a frame")
    if any(t == "c" for t in booster.feature_types or []):
        raise RegistryError(
            "the XGBoost model has categorical features, whose categories it does not keep; "
            "mlmedic adopts XGBoost models of numeric features (or train with --trainer xgboost)"
        )
    classes = int(config["learner"]["learner_model_param"].get("num_class", "0") or 0)
    task = "classification" if objective.startswith(("binary", "multi")) else "regression"
    return features, {}, task, 2 if objective.startswith("binary") else classes


def _categorical_positions(booster: Any) -> list[int]:
    """The positions of LightGBM's categorical features: those whose info lists values."""
    found = booster.dump_model().get("feature_infos", {})
    return [
        i
        for i, name in enumerate(booster.feature_name())
        if isinstance(found.get(name), dict) and found[name].get("values")
    ]


def adopt_native(
    model_dir: Path, kind: str, flavor: dict[str, Any], version: int, frame: Any, target: str
) -> tuple[Any, dict[str, Any]]:
    """(the ``NativeBooster``, what the cache needs to rebuild it) of a LightGBM or XGBoost
    version, its classes taken from the reference's labels in sorted order (the order the
    libraries' scikit-learn APIs give them) — ``UsageError`` when it cannot be adopted."""

    if not stored_natively(kind, flavor):
        raise UsageError(refusal(kind, flavor, version))
    files = [p for name in NATIVE_FILES for p in sorted(Path(model_dir).rglob(name))]
    if not files:
        raise UsageError(f"v{version}: its {kind} model file is missing")
    try:
        booster = read_booster(kind, files[0])
        features, categories, task, count = describe(kind, booster)
    except ImportError:
        raise UsageError(f'v{version} is a {kind} model: pip install "mlmedic[{kind}]"') from None
    except RegistryError as exc:
        raise UsageError(f"v{version}: {exc}") from None
    classes: list[Any] = []
    if task_of(task).probabilities:
        labels = list(frame[target].dropna().unique())
        try:
            labels.sort()
        except TypeError:
            labels.sort(key=str)
        if len(labels) != count:
            raise UsageError(
                f"v{version} scores {count} classes; the reference's '{target}' holds "
                f"{len(labels)} labels"
            )
        classes = [v.item() if hasattr(v, "item") else v for v in labels]
    spec = {
        "library": kind,
        "task": task,
        "features": features,
        "categories": categories,
        "classes": classes,
    }
    model = NativeBooster(kind, native_bytes(files[0]), features, categories, classes)
    return model, spec
