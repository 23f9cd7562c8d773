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
"""

from __future__ import annotations

import os
from typing import Any

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

            if not hasattr(self.model, "predict_proba"):
                raise ValueError(
                    "this is a regression model: it answers numbers, not class probabilities"
                )

            return pd.DataFrame(
                self.model.predict_proba(data),
                columns=[str(c) for c in self.model.classes_],
                index=getattr(data, "index", None),
            )
        raise ValueError(f"params.output must be one of {', '.join(OUTPUTS)}, not {output!r}")


def _load_pyfunc(path: str) -> Classifier:
    """MLflow's entry point: ``path`` is the model file inside the model directory."""
    import mlflow.sklearn

    directory = path if os.path.isdir(path) else os.path.dirname(path)
    return Classifier(mlflow.sklearn.load_model(directory))
