"""The API's routers, one per concern, over one ``ServerState`` (``app.state.mlmedic``)."""

from mlmedic.serving.routes import admin, feedback, observe, predictions, status

ROUTERS = [predictions.router, feedback.router, status.router, observe.router, admin.router]

__all__ = ["ROUTERS"]
