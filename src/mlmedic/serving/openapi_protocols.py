"""The OpenAPI operations of the two protocols served beside mlmedic's own API (#22): MLflow's
scoring protocol (``/ping``, ``/version``, ``/invocations``) and the Open Inference Protocol v2
(``/v2/...``). Records are the served version's ``Record`` schema; the model name and version in
v2 paths are the served ones."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


MLFLOW_ERROR = {
    "type": "object",
    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error_code", "message"],
}
V2_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _records(max_records: int) -> dict[str, Any]:
    return {"type": "array", "items": _ref("Record"), "minItems": 1, "maxItems": max_records}


def mlflow_paths(*, max_records: int, max_body_bytes: int) -> dict[str, Any]:
    """``/ping``, ``/version`` and ``/invocations`` as ``mlflow models serve`` answers them."""
    params = {
        "type": "object",
        "properties": {"output": {"enum": ["labels", "probabilities"]}},
        "additionalProperties": False,
    }

    def body(field: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {field: _records(max_records), "params": params},
            "required": [field],
            "additionalProperties": False,
        }

    error = _json(MLFLOW_ERROR, "A request the model cannot take (MLflow's error shape).")
    return {
        "/ping": {
            "get": {
                "summary": "MLflow's health check",
                "operationId": "mlflow_ping",
                "responses": {"200": _text("An empty line.")},
            }
        },
        "/version": {
            "get": {
                "summary": "The MLflow version of the models",
                "operationId": "mlflow_version",
                "responses": {"200": _text("The version.")},
            }
        },
        "/invocations": {
            "post": {
                "summary": "Predict, in MLflow's scoring protocol",
                "description": "As `mlflow models serve`: `dataframe_records`, `instances` or "
                "`inputs` as records (also accepted: `dataframe_split`, `inputs` as columns, and "
                "a CSV body as `text/csv`). The request id for /feedback is in the "
                "`x-request-id` response header.",
                "operationId": "mlflow_invocations",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    body("dataframe_records"),
                                    body("instances"),
                                    body("inputs"),
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"predictions": {"type": "array"}},
                            "required": ["predictions"],
                        },
                        "Labels, or one {class: probability} object per row.",
                    ),
                    "400": error,
                    "413": _json(MLFLOW_ERROR, f"A body over {max_body_bytes} bytes."),
                    "503": _json(MLFLOW_ERROR, "No model is loaded yet."),
                },
            }
        },
    }


def v2_paths(*, name: str, version: int | None, max_records: int) -> dict[str, Any]:
    """The Open Inference Protocol's health, metadata, readiness and inference operations."""
    names = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [name]} if name else {"type": "string"},
    }
    versions = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [str(version)]}
        if version is not None
        else {"type": "string"},
    }
    error = _json(V2_ERROR, "A request the model cannot take.")
    missing = _json(V2_ERROR, "A model or version this server does not serve.")
    not_ready = _json(V2_ERROR, "No model is loaded yet.")
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
        "required": ["name", "datatype", "shape"],
    }
    infer_body = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["inputs"],
    }
    answer = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": tensor},
        },
        "required": ["model_name", "outputs"],
    }

    def operation(
        op: str, summary: str, ok: dict[str, Any], *params: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        responses = {"200": _json(ok, summary)}
        if params:
            responses.update({"404": missing, "503": not_ready})
        return {
            "summary": summary,
            "operationId": op,
            "parameters": list(params),
            "responses": {**responses, **extra.pop("responses", {})},
            **extra,
        }

    meta = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    infer = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": infer_body}}},
        "responses": {"400": error, "413": error},
        "description": f"One tensor per feature, [rows] or [rows, 1], at most {max_records} "
        "rows; outputs `predict` and `predict_proba`.",
    }
    return {
        "/v2": {"get": operation("v2_server", "Server metadata", meta)},
        "/v2/health/live": {"get": operation("v2_live", "Liveness", {"type": "object"})},
        "/v2/health/ready": {
            "get": operation(
                "v2_ready", "Readiness", ready, responses={"503": _json(ready, "Not ready.")}
            )
        },
        "/v2/models/{name}": {"get": operation("v2_model", "Model metadata", meta, names)},
        "/v2/models/{name}/versions/{version}": {
            "get": operation("v2_model_version", "Model metadata", meta, names, versions)
        },
        "/v2/models/{name}/ready": {
            "get": operation("v2_model_ready", "Model ready", ready, names)
        },
        "/v2/models/{name}/versions/{version}/ready": {
            "get": operation("v2_model_version_ready", "Model ready", ready, names, versions)
        },
        "/v2/models/{name}/infer": {"post": operation("v2_infer", "Infer", answer, names, **infer)},
        "/v2/models/{name}/versions/{version}/infer": {
            "post": operation("v2_infer_version", "Infer", answer, names, versions, **infer)
        },
    }
