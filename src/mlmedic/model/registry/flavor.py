"""How mlmedic writes a model into MLflow: MLflow's scikit-learn flavor (skops) with mlmedic's
small pyfunc, and a LightGBM or XGBoost booster also in its own format beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlmedic.model import mlmedic_pyfunc


class ClassifierFlavor:
    """``mlflow.sklearn`` as MLflow's ``Model.log`` calls a flavor, with one change: the model's
    python_function flavor is ``mlmedic_pyfunc`` (shipped in the model's ``code/``), which also
    answers probabilities (``params={"output": "probabilities"}``). The scikit-learn flavor is
    MLflow's own, so ``mlflow.sklearn.load_model`` works as before."""

    __name__ = "mlflow.sklearn"

    @staticmethod
    def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
        import mlflow.sklearn
        from mlflow.pyfunc import FLAVOR_NAME

        module = Path(mlmedic_pyfunc.__file__)
        mlflow.sklearn.save_model(
            path=path, mlflow_model=mlflow_model, code_paths=[str(module)], **kwargs
        )
        mlflow_model.flavors[FLAVOR_NAME]["loader_module"] = module.stem
        mlflow_model.save(str(Path(path) / "MLmodel"))
        booster = kwargs.get("sk_model")
        if isinstance(booster, mlmedic_pyfunc.NativeBooster):  # its own format, beside skops'
            native = booster.native()
            if isinstance(native, str):
                (Path(path) / "model.txt").write_text(native, encoding="utf-8")
            else:
                (Path(path) / "model.ubj").write_bytes(native)


def native_requirements(model: Any) -> list[str]:
    """The library a LightGBM or XGBoost model needs, pinned."""
    library = getattr(model, "library", None)
    if library not in ("lightgbm", "xgboost") or not hasattr(model, "native"):
        return []
    import importlib

    return [f"{library}=={importlib.import_module(library).__version__}"]
