"""The model a server holds: loaded from a local copy without importing MLflow, checked on a canary.

A version is exported once from the registry into ``.mlmedic/serving-cache/v<N>/`` (the MLflow model
directory, the baseline, and a manifest with the exact skops trusted types); a restarting worker
loads it from there in a fraction of a second, which is what keeps the time to recovery short.
Clearing the cache forces the next load to go back to the registry.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.errors import ModelLoadError
from mlmedic.data.contract import DataContract
from mlmedic.model.mlmedic_pyfunc import NativeBooster  # skops finds a booster as mlmedic_pyfunc.*
from mlmedic.model.native import SPEC, native_bytes
from mlmedic.model.tasks import CLASSIFICATION, Task, task_of

CACHE_DIR = "serving-cache"
__all__ = ["CACHE_DIR", "LoadedModel", "ModelLoadError", "load_local"]


@dataclass
class LoadedModel:
    """A champion version ready to predict."""

    version: int
    model: Any
    contract: DataContract
    features: list[str]
    numeric: set[str]
    integer: set[str]
    nullable: set[str]
    classes: list[Any]
    canary: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: float | None = None
    source: str = "cache"
    fast: _FastPath | _NativeFast | None = None
    fallback_from: int | None = None  # the champion this version stands in for
    fallback_why: str = ""
    # what it predicts (``mlmedic.model.tasks``): a regression's predictions are numbers, and the
    # outputs' one column holds them (the prediction log's proba_0, the prediction profile's
    # "probability")
    task: Task = CLASSIFICATION

    def _answers(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.task.answers(outputs, self.classes)

    def predict_columns(self, parts: list[dict[str, list[Any]]]) -> tuple[np.ndarray, np.ndarray]:
        """Predict several requests' rows in one model call: (predictions, outputs — class
        probabilities, or a regression's values as one column)."""
        if self.fast is not None:
            return self._answers(self.fast.predict_proba(parts))
        return self.predict(self.frame(parts))

    def frame(self, parts: list[dict[str, list[Any]]]) -> pd.DataFrame:
        """One feature frame from several requests' columns (numbers as float64)."""
        data: dict[str, Any] = {}
        for name in self.features:
            values = parts[0][name] if len(parts) == 1 else [v for p in parts for v in p[name]]
            data[name] = np.asarray(values, dtype=np.float64) if name in self.numeric else values
        return pd.DataFrame(data, columns=self.features)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, outputs) for a prepared feature frame (see ``predict_columns``)."""
        return self._answers(self.task.outputs(self.model, frame))

    def check_canary(self) -> None:
        """Predict the stored canary row; raise ``ModelLoadError`` unless it gives sane output."""
        try:
            columns = {c: self.canary[c].tolist() for c in self.features}
            _, probabilities = self.predict_columns([columns])
        except Exception as exc:
            raise ModelLoadError(f"v{self.version}: canary prediction failed: {exc}") from exc
        problem = self.task.canary_problem(probabilities[0], self.classes)
        if problem is not None:
            raise ModelLoadError(f"v{self.version}: {problem}")


class _FastPath:
    """The default pipeline (ordinal-encoded categories + numbers -> HistGradientBoosting),
    evaluated without pandas: categories become codes by dictionary lookup, numbers a float
    matrix, and the fitted booster predicts on that. About 2 ms less per model call than the
    pipeline's ColumnTransformer; used only when it reproduces the pipeline's output exactly."""

    def __init__(
        self, booster: Any, categories: list[tuple[str, dict[Any, float]]], numbers: list[str]
    ) -> None:
        self.booster = booster
        self.categories = categories
        self.numbers = numbers
        self.unknown = -1.0  # the code of a category the encoder never saw
        # the booster's own categorical encoding folded into the lookups (#22): its trees are
        # then called directly, without its ColumnTransformer (a quarter of a loaded worker's
        # time); False where that encoding is not the one this reads
        self.direct = False
        self._direct()

    @classmethod
    def compile(cls, model: Any) -> _FastPath | None:
        try:
            from sklearn.compose import ColumnTransformer
            from sklearn.ensemble import (
                HistGradientBoostingClassifier,
                HistGradientBoostingRegressor,
            )
            from sklearn.pipeline import Pipeline
            from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
        except ImportError:  # pragma: no cover
            return None
        if not isinstance(model, Pipeline) or len(model.steps) != 2:
            return None
        prepare, booster = model.steps[0][1], model.steps[1][1]
        if not isinstance(prepare, ColumnTransformer) or not isinstance(
            booster, HistGradientBoostingClassifier | HistGradientBoostingRegressor
        ):
            return None
        categories: list[tuple[str, dict[Any, float]]] = []
        numbers: list[str] = []
        order: list[str] = []
        for name, transformer, columns in prepare.transformers_:
            if (name == "remainder" and transformer == "drop") or len(columns) == 0:
                continue  # nothing to transform (an unfitted encoder of no columns, say)
            if isinstance(transformer, OrdinalEncoder):
                if transformer.unknown_value != -1 or transformer.encoded_missing_value != -1:
                    return None
                for column, values in zip(columns, transformer.categories_, strict=True):
                    lookup = {v: float(i) for i, v in enumerate(values) if not _missing(v)}
                    categories.append((column, lookup))
                    order.append("c")
            elif transformer == "passthrough" or (
                isinstance(transformer, FunctionTransformer) and transformer.func is None
            ):
                numbers.extend(columns)
                order.extend("n" * len(columns))
            else:
                return None
        if order != sorted(order):  # categories first, then numbers, as the default trainer builds
            return None
        return cls(booster, categories, numbers)

    def matrix(self, parts: list[dict[str, list[Any]]]) -> np.ndarray:
        blocks = []
        for column, lookup in self.categories:
            values = [v for part in parts for v in part[column]]
            blocks.append(
                np.fromiter((lookup.get(v, self.unknown) for v in values), np.float64, len(values))
            )
        for column in self.numbers:
            values = [v for part in parts for v in part[column]]
            blocks.append(np.asarray(values, dtype=np.float64))
        return np.column_stack(blocks)

    def _direct(self) -> None:
        """Fold the booster's internal category encoder (fitted codes -> its own, unknown and
        missing -> NaN) into the lookups, when it is exactly the one sklearn builds for the
        default pipeline: categorical columns first, then the numbers passed through. The
        load-time comparison with the pipeline (``_agrees``) still decides whether it serves."""
        try:
            from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
            from sklearn.utils import check_array

            inner = self.booster._preprocessor
            encoder = inner.named_transformers_["encoder"]
            numbers = inner.named_transformers_["numerical"]
            mask = np.asarray(self.booster.is_categorical_, dtype=bool)
            func = getattr(numbers, "func", None)  # None, or a check_array to float64
            if not (
                isinstance(encoder, OrdinalEncoder)
                and isinstance(numbers, FunctionTransformer)
                and getattr(func, "func", func) in (None, check_array)
                and np.isnan(encoder.unknown_value)
                and np.isnan(encoder.encoded_missing_value)
                and len(encoder.categories_) == len(self.categories) == int(mask.sum())
                and bool(mask[: len(self.categories)].all())
            ):
                return
            composed = []
            for (column, lookup), known in zip(self.categories, encoder.categories_, strict=True):
                position = {float(code): float(i) for i, code in enumerate(known)}
                table = {v: position.get(code, math.nan) for v, code in lookup.items()}
                composed.append((column, table))
            self.direct = True
        except (AttributeError, KeyError, ImportError, TypeError, ValueError):
            return
        self.categories, self.unknown = composed, math.nan

    def predict_proba(self, parts: list[dict[str, list[Any]]]) -> np.ndarray:
        """Class probabilities, or a regressor's values (one column)."""
        booster = self.booster
        values = not hasattr(booster, "predict_proba")  # a regressor: its values, one column
        if not self.direct:
            if values:
                return np.asarray(booster.predict(self.matrix(parts)), dtype=float).reshape(-1, 1)
            return np.asarray(booster.predict_proba(self.matrix(parts)))
        matrix = self.matrix(parts)
        raw = np.zeros(
            (matrix.shape[0], booster.n_trees_per_iteration_),
            dtype=booster._baseline_prediction.dtype,
            order="F",
        )
        raw += booster._baseline_prediction
        # one OpenMP thread (#22): a worker process is the unit of parallelism. sklearn's trees
        # open a parallel region per tree; on a host whose cores are busy (other workers, the
        # clients) every region waits for a thread that is not running, and a worker served
        # 950 one-row requests/s at 8 connections on 2 cores against 2,000 with one thread
        booster._predict_iterations(matrix, booster._predictors, raw, False, TREE_THREADS)
        if values:
            return np.asarray(booster._loss.link.inverse(raw), dtype=float).reshape(-1, 1)
        return np.asarray(booster._loss.predict_proba(raw))


TREE_THREADS = 1  # OpenMP threads of a fast-path model call (see _FastPath.predict_proba)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _agrees(loaded: LoadedModel, rows: pd.DataFrame) -> bool:
    """Does the fast path give the pipeline's probabilities on these rows?"""
    assert loaded.fast is not None
    parts = [{c: rows[c].tolist() for c in loaded.features}]
    fast = loaded.fast.predict_proba(parts)
    slow = loaded.predict(loaded.frame(parts))[1]
    return bool(np.allclose(fast, slow, rtol=loaded.task.fast_path_rtol, atol=1e-12))


def cache_path(state_dir: Path, version: int) -> Path:
    return Path(state_dir) / CACHE_DIR / f"v{version}"


def clear_cache(state_dir: Path) -> int:
    """Remove every cached version; returns how many were removed."""
    folder = Path(state_dir) / CACHE_DIR
    if not folder.exists():
        return 0
    removed = 0
    for entry in folder.iterdir():
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _example(path: Path) -> pd.DataFrame:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "columns" in data:
        return pd.DataFrame(data["data"], columns=data["columns"])
    if isinstance(data, dict) and "dataframe_split" in data:
        split = data["dataframe_split"]
        return pd.DataFrame(split["data"], columns=split["columns"])
    return pd.DataFrame(data)


def file_digest(path: Path) -> str:
    """sha256 of a file, to tell a corrupt local copy from a good one."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file(directory: Path) -> Path:
    """The serialized model inside an exported MLflow model directory."""
    folder = Path(directory) / "model"
    # skops, pickle, or a LightGBM / XGBoost model in its own format (an adopted one)
    for name in ("model.skops", "model.pkl", "model.lgb", "model.ubj", "model.json", "model.xgb"):
        if (folder / name).exists():
            return folder / name
    return folder / "model.skops"


def load_local(
    directory: Path, version: int, *, source: str = "cache", allow_pickle: bool = False
) -> LoadedModel:
    """Load an exported version (``model/``, ``baseline/contract.json``, ``manifest.json``).

    skops only, trusting exactly the types the manifest names (copied from the version's
    ``mlmedic.skops_trusted_types`` tag at export); a pickled model only with ``allow_pickle``.
    The model file must match the manifest's sha256, so a corrupt copy is never served."""
    import skops.io

    directory = Path(directory)
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        path = model_file(directory)
        expected = manifest.get("sha256")
        if expected and file_digest(path) != expected:
            raise ModelLoadError(
                f"{directory}: {path.name} does not match its recorded sha256 (corrupt copy)"
            )
        form = manifest.get("serialization_format", "skops")
        if form in ("lightgbm", "xgboost"):  # adopted, as MLflow stored it
            model = _native(directory, form, path)
        elif form != "skops":
            if not allow_pickle:
                raise ModelLoadError(
                    f"v{version} is a pickled model; loading it would execute its code. Set "
                    "model_training.allow_pickle_models_executing_code to true to allow it"
                )
            import pickle

            with open(path, "rb") as handle:
                model = pickle.load(handle)
        else:
            trusted = manifest.get("skops_trusted_types")
            if trusted is None:
                raise ModelLoadError(
                    f"{directory}: the manifest does not name the skops trusted types"
                )
            model = skops.io.load(path, trusted=list(trusted))
        contract = DataContract.load(directory / "baseline" / "contract.json")
        canary = _example(directory / "model" / "input_example.json").head(1)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"{directory}: cannot load v{version}: {type(exc).__name__}: {exc}"
        ) from exc
    specs = contract.columns_
    features = [c for c in canary.columns]
    loaded = LoadedModel(
        version=version,
        model=model,
        contract=contract,
        features=features,
        numeric={c for c in features if specs.get(c) is not None and specs[c].kind == "numeric"},
        integer={
            c
            for c in features
            if specs.get(c) is not None
            and specs[c].integer
            and specs[c].dtype.lower().startswith(("int", "uint"))
        },
        nullable={c for c in features if specs.get(c) is None or specs[c].missing_rate > 0},
        classes=list(getattr(model, "classes_", [])),
        canary=canary,
        task=task_of(contract.task),
        metrics=dict(manifest.get("metrics") or {}),
        trained_at=manifest.get("trained_at"),
        source=source,
    )
    loaded.check_canary()
    loaded.fast = _FastPath.compile(model) or _NativeFast.compile(model)
    if loaded.fast is not None:
        probe = _probe_rows(loaded)
        if not _agrees(loaded, probe):
            loaded.fast = None
    return loaded


class _NativeFast:
    """A LightGBM or XGBoost model's fast path: its booster on a float matrix built by lookup
    (``NativeBooster.outputs``), without pandas; used only when it reproduces the model's
    answers (``_agrees``)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.categories = [
            (name, dict.fromkeys(values)) for name, values in model.categories.items()
        ]

    @classmethod
    def compile(cls, model: Any) -> _NativeFast | None:
        return cls(model) if callable(getattr(model, "outputs", None)) else None

    def predict_proba(self, parts: list[dict[str, list[Any]]]) -> np.ndarray:
        """Class probabilities, or a regression's values (one column)."""
        if len(parts) == 1:
            return np.asarray(self.model.outputs(parts[0]))
        names = list(parts[0])
        return np.asarray(self.model.outputs({n: [v for p in parts for v in p[n]] for n in names}))


def _native(directory: Path, library: str, path: Path) -> Any:
    """An adopted LightGBM or XGBoost model, with what adopt stored of it (``native.json``)."""
    spec = json.loads((directory / "baseline" / SPEC).read_text(encoding="utf-8"))
    return NativeBooster(
        library, native_bytes(path), spec["features"], spec["categories"], spec["classes"]
    )


def _probe_rows(loaded: LoadedModel) -> pd.DataFrame:
    """The canary plus variants (unknown and missing categories, missing numbers) to compare
    the fast path with the pipeline on."""
    canary = loaded.canary[loaded.features]
    rows = [canary.iloc[0].to_dict()]
    unknown = dict(rows[0])
    missing = dict(rows[0])
    for name in loaded.features:
        if name in loaded.numeric:
            missing[name] = float("nan")
        else:
            unknown[name] = "__never_seen__"
            missing[name] = None
    rows += [unknown, missing]
    for column, lookup in loaded.fast.categories if loaded.fast else []:
        for value in list(lookup)[:3]:
            variant = dict(rows[0])
            variant[column] = value
            rows.append(variant)
    return pd.DataFrame(rows, columns=loaded.features)
