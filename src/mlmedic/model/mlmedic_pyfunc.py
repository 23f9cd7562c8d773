"""The python_function flavor of a model mlmedic registers: labels by default, probabilities on
request, through plain MLflow.

This file is shipped inside each registered model (MLflow ``code_paths``) and imports nothing
from mlmedic, so a user with MLflow and scikit-learn alone can ask for probabilities::

    model = mlflow.pyfunc.load_model("models:/churn@champion")
    model.predict(frame)                                         # labels
    model.predict(frame, params={"output": "probabilities"})     # one column per class

and over HTTP, ``mlflow models serve -m models:/churn@champion``::

    {"dataframe_records": [...], "params": {"output": "probabilities"}}

The scikit-learn model itself is loaded by ``mlflow.sklearn.load_model`` from the same directory
(skops, trusting exactly the types recorded in the model's ``MLmodel``); nothing is unpickled.

A LightGBM or XGBoost model is a ``NativeBooster`` (below, shipped in this same file): its state
is the booster in the library's own format — LightGBM's text model, XGBoost's UBJSON — with the
features, each categorical feature's categories and the classes, all plain values; skops stores
that state and this class rebuilds the booster from it. So plain MLflow needs only this file and
the library, and nothing is pickled.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# one name for the booster's class whether this file is loaded as part of mlmedic or, by plain
# MLflow, from the model's code/ folder: skops records and finds it as mlmedic_pyfunc.NativeBooster
sys.modules.setdefault("mlmedic_pyfunc", sys.modules[__name__])

OUTPUTS = ("labels", "probabilities")


class Classifier:
    """The pyfunc implementation: ``predict(data, params={"output": ...})``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        """The scikit-learn model (as MLflow's own scikit-learn pyfunc offers it)."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        output = (params or {}).get("output") or "labels"
        if output == "labels":
            return self.model.predict(data)
        if output == "probabilities":
            import pandas as pd

            if not len(getattr(self.model, "classes_", [])):
                raise ValueError(
                    "this is a regression model: it answers numbers, not class probabilities"
                )

            return pd.DataFrame(
                self.model.predict_proba(data),
                columns=[str(c) for c in self.model.classes_],
                index=getattr(data, "index", None),
            )
        raise ValueError(f"params.output must be one of {', '.join(OUTPUTS)}, not {output!r}")


class NativeBooster:
    """A LightGBM or XGBoost booster with what it needs to score a frame: ``features`` in order,
    ``categories`` of each categorical feature (an unseen one is missing to the booster),
    ``classes_`` (a classification's labels, in the booster's order; empty for a regression).
    ``predict`` and ``predict_proba`` as scikit-learn's."""

    def __init__(
        self,
        library: str,
        native: Any,
        features: list[str],
        categories: dict[str, list[Any]],
        classes: list[Any],
    ) -> None:
        self.library = library
        self.features = list(features)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.classes_ = classes
        self.booster: Any = None
        self._load(native)

    def _load(self, native: Any) -> None:
        if self.library == "lightgbm":
            import lightgbm

            self.booster = lightgbm.Booster(model_str=native)
        else:
            import xgboost

            self.booster = xgboost.Booster()
            self.booster.load_model(bytearray(native))

    def native(self) -> Any:
        """The booster in its library's own format: LightGBM's text, XGBoost's UBJSON bytes."""
        if self.library == "lightgbm":
            return self.booster.model_to_string()
        return bytes(self.booster.save_raw(raw_format="ubj"))

    def __getstate__(self) -> dict[str, Any]:  # plain values only (no lookups, no booster)
        return {
            "library": self.library,
            "native": self.native(),
            "features": self.features,
            "categories": self.categories,
            "classes": list(self.classes_),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.library = state["library"]
        self.features = list(state["features"])
        self.categories = dict(state["categories"])
        self.classes_ = list(state["classes"])
        self.booster = None
        self._load(state["native"])

    def frame(self, data: Any) -> Any:
        """The features as the booster was trained on them: numbers as floats, categories as
        pandas categoricals with the training categories."""
        import numpy as np
        import pandas as pd

        columns: dict[str, Any] = {}
        for name in self.features:
            values = data[name]
            if name in self.categories:  # an unseen or missing category: missing
                known = self.categories[name]
                text = [None if v is None or v != v else str(v) for v in values]
                kept = set(known)
                columns[name] = pd.Categorical(
                    [t if t in kept else None for t in text], categories=known
                )
            else:
                columns[name] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
                    dtype=np.float64
                )
        return pd.DataFrame(columns, columns=self.features)

    def _raw(self, data: Any) -> Any:
        import numpy as np

        frame = self.frame(data)
        if self.library == "lightgbm":
            return np.asarray(self.booster.predict(frame))
        import xgboost

        return np.asarray(self.booster.predict(xgboost.DMatrix(frame, enable_categorical=True)))

    def outputs(self, columns: dict[str, list[Any]]) -> Any:
        """The booster's output for columns of plain values, without pandas (the serving fast
        path): a category becomes its code by lookup (unseen or missing: missing to the
        booster), a number a float; one thread. Class probabilities (binary: both columns) or
        a regression's values."""
        import numpy as np

        lookups = self.__dict__.get("_lookups")
        if lookups is None:
            lookups = {
                name: {value: float(i) for i, value in enumerate(values)}
                for name, values in self.categories.items()
            }
            self._lookups = lookups
        rows = len(columns[self.features[0]])
        matrix = np.empty((rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            values = columns[name]
            lookup = lookups.get(name)
            if lookup is not None:
                codes = (lookup.get(v if isinstance(v, str) else str(v), np.nan) for v in values)
                matrix[:, j] = np.fromiter(codes, np.float64, rows)
            else:
                matrix[:, j] = [np.nan if v is None else v for v in values]
        if self.library == "lightgbm":
            raw = np.asarray(self.booster.predict(matrix, num_threads=1))
        else:
            import xgboost

            kinds = ["c" if name in lookups else "q" for name in self.features]
            given = xgboost.DMatrix(
                matrix,
                feature_names=self.features,
                feature_types=kinds,
                enable_categorical=True,
                nthread=1,
            )
            raw = np.asarray(self.booster.predict(given))
        if self.classes_ and raw.ndim == 1:
            return np.column_stack([1.0 - raw, raw])
        return raw if self.classes_ else raw.astype(float).reshape(-1, 1)

    def predict_proba(self, data: Any) -> Any:
        import numpy as np

        if not self.classes_:
            raise AttributeError("a regression booster has no predict_proba")
        raw = self._raw(data)
        if raw.ndim == 1:  # binary: the second class's probability
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, data: Any) -> Any:
        import numpy as np

        if not self.classes_:
            return self._raw(data).astype(float)
        return np.asarray(self.classes_)[self.predict_proba(data).argmax(axis=1)]


NativeBooster.__module__ = "mlmedic_pyfunc"  # the name skops records (see the top)


def _load_pyfunc(path: str) -> Classifier:
    """MLflow's entry point: ``path`` is the model file inside the model directory."""
    import mlflow.sklearn

    directory = path if os.path.isdir(path) else os.path.dirname(path)
    return Classifier(mlflow.sklearn.load_model(directory))
