"""The API's routers, one per concern, over one ``ServerState`` (``app.state.mlmedic``): mlmedic's
own API, MLflow's scoring protocol and the Open Inference Protocol (v2)."""

from mlmedic.serving.routes import (
    admin,
    docs,
    feedback,
    mlflow_protocol,
    observe,
    predictions,
    status,
    v2,
)

ROUTERS = [
    predictions.router,
    feedback.router,
    status.router,
    observe.router,
    admin.router,
    mlflow_protocol.router,
    v2.router,
    docs.router,
]

__all__ = ["ROUTERS"]
