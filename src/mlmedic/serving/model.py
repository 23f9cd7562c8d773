"""The model a server holds: loaded from a local copy without importing MLflow, checked on a canary.

A version is exported once from the registry into ``.mlmedic/serving-cache/v<N>/`` (the MLflow model
directory, the baseline, and a manifest with the exact skops trusted types); a restarting worker
loads it from there in a fraction of a second, which is what keeps the time to recovery short.
Clearing the cache forces the next load to go back to the registry.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.data.contract import DataContract

CACHE_DIR = "serving-cache"


class ModelLoadError(Exception):
    """A version could not be loaded, or failed its canary prediction."""


@dataclass
class LoadedModel:
    """A champion version ready to predict."""

    version: int
    model: Any
    contract: DataContract
    features: list[str]
    numeric: set[str]
    integer: set[str]
    classes: list[Any]
    canary: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: float | None = None
    source: str = "cache"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(predicted labels, class probabilities) for a prepared feature frame."""
        probabilities = np.asarray(self.model.predict_proba(frame[self.features]))
        labels = np.asarray(self.classes, dtype=object)[probabilities.argmax(axis=1)]
        return labels, probabilities

    def check_canary(self) -> None:
        """Predict the stored canary row; raise ``ModelLoadError`` unless it gives sane output."""
        try:
            _, probabilities = self.predict(self.canary)
        except Exception as exc:
            raise ModelLoadError(f"v{self.version}: canary prediction failed: {exc}") from exc
        row = probabilities[0]
        if row.shape[0] != len(self.classes) or not np.all(np.isfinite(row)):
            raise ModelLoadError(f"v{self.version}: canary prediction is not a probability vector")
        if not math.isclose(float(row.sum()), 1.0, abs_tol=1e-6):
            raise ModelLoadError(f"v{self.version}: canary probabilities sum to {row.sum():.4f}")


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


def load_local(directory: Path, version: int, *, source: str = "cache") -> LoadedModel:
    """Load an exported version (``model/``, ``baseline/contract.json``, ``manifest.json``)."""
    import skops.io

    directory = Path(directory)
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        trusted = manifest.get("skops_trusted_types")
        if trusted is None:
            raise ModelLoadError(f"{directory}: the manifest does not name the skops trusted types")
        model = skops.io.load(directory / "model" / "model.skops", trusted=list(trusted))
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
        integer={c for c in features if specs.get(c) is not None and specs[c].integer},
        classes=list(getattr(model, "classes_", [])),
        canary=canary,
        metrics=dict(manifest.get("metrics") or {}),
        trained_at=manifest.get("trained_at"),
        source=source,
    )
    loaded.check_canary()
    return loaded
