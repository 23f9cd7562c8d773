"""The API's OpenAPI document, typed from the model being served.

The request validation of ``/predict`` and ``/feedback`` is hand-written for speed (no pydantic
model per request); this module describes exactly what it accepts, from the served version's
features, kinds and classes, so that a client generator, Swagger UI (``/docs``) and a fuzzer
(schemathesis runs against ``mlmedic serve`` in the test suite) all see the real contract.

Examples:
    >>> record = record_schema(["age", "plan"], numeric={"age"}, integer={"age"}, nullable={"plan"})
    >>> record["properties"]["age"]["type"], record["properties"]["plan"]["type"]
    ('integer', ['string', 'null'])
    >>> label_schema([0, 1])["enum"]
    [0, 1, '0', '1']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mlmedic.core.jsonvalues import plain
from mlmedic.core.labels import accepted_labels

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# the largest magnitude a feature value may have: far beyond any real measurement, and a round
# decimal so that the schema's bound and the server's check agree exactly (an integer is compared
# as an integer, a float as a float)
NUMBER_LIMIT = 1e300
NUMBER_LIMIT_INT = 10**300


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def record_schema(
    features: Sequence[str], *, numeric: set[str], integer: set[str], nullable: set[str]
) -> dict[str, Any]:
    """One record: every feature, nothing else; numbers finite float64 (integral where the
    contract says integer), text for categories, null only where the contract has missing
    values."""
    properties: dict[str, Any] = {}
    for name in features:
        if name in numeric:
            kind = "integer" if name in integer else "number"
            schema: dict[str, Any] = {"minimum": -NUMBER_LIMIT, "maximum": NUMBER_LIMIT}
        else:
            kind, schema = "string", {}
        schema["type"] = [kind, "null"] if name in nullable else kind
        properties[name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": list(features),
        "additionalProperties": False,
    }


def label_schema(classes: Iterable[Any]) -> dict[str, Any]:
    """A label as ``/feedback`` takes it: one of the classes, as its JSON value or its text."""
    pairs = accepted_labels(classes)  # the values first, then the texts
    own = [value for value, c in pairs if not isinstance(value, str) or value == plain(c)]
    texts = [value for value, _ in pairs if value not in own]
    return {"enum": own + texts}


def _class_schema(classes: Sequence[Any]) -> dict[str, Any]:
    return {"enum": [plain(c) for c in classes]}


def _predict_response(classes: Sequence[Any]) -> dict[str, Any]:
    """What ``POST /predict`` answers: a prediction per record, or an error for a record the
    model could not score; a regression's (no classes) are numbers, without probabilities."""
    schema = _classified_response(classes)
    for name in ("probabilities", "classes") if not classes else ():
        del schema["properties"][name]
        schema["required"].remove(name)
        schema["properties"]["predictions"]["items"] = {"type": ["number", "null"]}
    return schema


def _classified_response(classes: Sequence[Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            "model_version": {"type": "integer", "minimum": 1},
            "predictions": {
                "description": "One per record; null for a record listed in errors.",
                "type": "array",
                "items": {"anyOf": [_class_schema(classes), {"type": "null"}]},
            },
            "probabilities": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {
                            "type": "array",
                            "items": {"type": "number", "minimum": 0, "maximum": 1},
                            "minItems": len(classes),
                            "maxItems": len(classes),
                        },
                        {"type": "null"},
                    ]
                },
            },
            "classes": {"type": "array", "items": _class_schema(classes)},
            "errors": {
                "description": "The records the model could not score (the others are "
                "answered); a request whose every record fails is a 422 instead.",
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "detail": {"type": "string"},
                    },
                    "required": ["index", "detail"],
                },
            },
        },
        "required": [
            "request_id",
            "model_version",
            "predictions",
            "probabilities",
            "classes",
            "errors",
        ],
    }


def component_schemas(
    *,
    features: Sequence[str],
    numeric: set[str],
    integer: set[str],
    nullable: set[str],
    classes: Sequence[Any],
    max_records: int,
) -> dict[str, Any]:
    """Every schema the paths refer to, for one served version."""
    records = {"type": "array", "items": _ref("Record"), "minItems": 1, "maxItems": max_records}
    label_item = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            "label": _ref("Label"),
        },
        "required": ["request_id", "label"],
        "additionalProperties": False,
    }
    return {
        "Record": record_schema(features, numeric=numeric, integer=integer, nullable=nullable),
        "PredictRequest": {
            "description": "One record, a list of records, or {'records': [...]}.",
            "anyOf": [
                _ref("Record"),
                records,
                {
                    "type": "object",
                    "properties": {"records": records},
                    "required": ["records"],
                    "additionalProperties": False,
                },
            ],
        },
        "PredictResponse": _predict_response(classes),
        "Label": label_schema(classes) if classes else {"type": "number"},
        "FeedbackRequest": {
            "description": "One label, or {'labels': [...]}.",
            "anyOf": [
                label_item,
                {
                    "type": "object",
                    "properties": {"labels": {"type": "array", "items": label_item, "minItems": 1}},
                    "required": ["labels"],
                    "additionalProperties": False,
                },
            ],
        },
        "FeedbackResponse": {
            "type": "object",
            "properties": {
                "recorded": {"type": "integer", "minimum": 0},
                "unknown_request_ids": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer", "minimum": 1},
                        "examples": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["count", "examples"],
                },
            },
            "required": ["recorded"],
        },
        **_status_schemas(classes),
    }


def _status_schemas(classes: Sequence[Any]) -> dict[str, Any]:
    """The schemas of the answers about the service: errors, readiness, the model, reloads."""
    return {
        "Error": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        },
        "Ready": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "model_version": {"type": "integer"},
                "detail": {"type": "string"},
                "fallback": {"type": "object"},
                "event_store": {"type": "object"},
                "prediction_log": {"type": "object"},
            },
            "required": ["ready"],
        },
        "Model": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "integer"},
                "alias": {"type": "string"},
                "trained_at": {"type": ["number", "null"]},
                "metrics": {"type": "object"},
                "features": {"type": "array", "items": {"type": "string"}},
                "classes": {"type": "array", "items": _class_schema(classes)},
                "loaded_from": {"type": "string"},
                "fast_path": {"type": "boolean"},
                "fallback": {"type": ["object", "null"]},
                "release": {"type": ["object", "null"]},  # a shadow or canary beside it (#24)
            },
            "required": ["name", "version", "features", "classes"],
        },
        "Reload": {
            "type": "object",
            "properties": {
                "swapped": {"type": "boolean"},
                "model_version": {"type": ["integer", "null"]},
            },
            "required": ["swapped", "model_version"],
        },
    }


def paths(*, max_body_bytes: int, version: int | None) -> dict[str, Any]:
    """The documented operations (status codes, bodies) of every endpoint; ``guard`` adds who
    may call them."""
    served = f"v{version}" if version is not None else "no version yet"
    too_large = _error(f"More records than allowed, or a body over {max_body_bytes} bytes.")
    no_model = _error("No model is loaded yet.")
    request_id = {
        "name": "x-request-id",
        "in": "header",
        "required": False,
        "description": "Your id for this request, echoed back and used by /feedback when it "
        "matches [A-Za-z0-9._:-]{1,128}; otherwise the server issues one.",
        "schema": {"type": "string"},
    }
    return {
        "/predict": {
            "post": {
                "summary": "Predict with the champion",
                "description": f"Labels and class probabilities from the served model ({served}). "
                "Concurrent requests are batched into one model call.",
                "operationId": "predict",
                "parameters": [request_id],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PredictRequest")}},
                },
                "responses": {
                    "200": _json(_ref("PredictResponse"), "Predictions, one per record."),
                    "413": too_large,
                    "422": _error("A record the model cannot take; the detail names the field."),
                    "503": no_model,
                },
            }
        },
        "/feedback": {
            "post": {
                "summary": "Record true labels for served predictions",
                "operationId": "feedback",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FeedbackRequest")}},
                },
                "responses": {
                    "200": _json(_ref("FeedbackResponse"), "Labels recorded."),
                    "413": too_large,
                    "422": _error("A label that is not one of the model's classes, or a bad id."),
                    "503": no_model,
                },
            }
        },
        **_service_paths(no_model),
    }


def _service_paths(no_model: dict[str, Any]) -> dict[str, Any]:
    """The operations about the service itself: probes, the model, the dashboard, metrics,
    the admin reload."""
    return {
        "/health": {
            "get": {
                "summary": "Liveness",
                "operationId": "health",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"status": {"const": "alive"}},
                            "required": ["status"],
                        },
                        "The process answers.",
                    )
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: a model is loaded and its canary prediction succeeds",
                "operationId": "ready",
                "responses": {
                    "200": _json(_ref("Ready"), "Ready to predict."),
                    "503": _json(_ref("Ready"), "Not ready, and why."),
                },
            }
        },
        "/model": {
            "get": {
                "summary": "The version being served",
                "operationId": "model",
                "responses": {"200": _json(_ref("Model"), "The served version."), "503": no_model},
            }
        },
        "/dashboard": {
            "get": {
                "summary": "The self-healing dashboard (HTML, refreshes itself)",
                "operationId": "dashboard",
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/admin/reload": {
            "post": {
                "summary": "Follow the registry's champion now",
                "operationId": "reload",
                "responses": {
                    "200": _json(_ref("Reload"), "Whether the served version changed."),
                    "401": _error("No bearer token."),
                    "403": _error("Wrong token, or admin disabled (MLMEDIC_ADMIN_TOKEN unset)."),
                },
                "security": [{"bearer": []}],
            }
        },
    }


def guard(operations: dict[str, Any], guarded: Callable[[str], bool] | None) -> dict[str, Any]:
    """Each operation of a path that needs the API token (``guarded(path)``) says so: bearer
    security, and its 401 and 403. The admin paths carry their own."""
    if guarded is None:
        return operations
    for path, methods in operations.items():
        if path.startswith("/admin/") or not guarded(path):
            continue
        for operation in methods.values():
            operation["security"] = [{"bearer": []}]
            operation["responses"].update(
                {
                    "401": _error("No bearer token (MLMEDIC_API_TOKEN is set on the server)."),
                    "403": _error("Wrong bearer token."),
                }
            )
    return operations


def document(
    *,
    title: str,
    app_version: str,
    model: Any | None,
    max_records: int,
    max_body_bytes: int,
    guarded: Callable[[str], bool] | None = None,
    model_name: str = "",
) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for a server holding ``model`` (a ``LoadedModel``, or
    None before one is loaded: records are then described as any object): mlmedic's own API,
    MLflow's scoring protocol and the Open Inference Protocol v2."""
    from mlmedic.serving.openapi_protocols import mlflow_paths, v2_paths

    if model is not None:
        schemas = component_schemas(
            features=model.features,
            numeric=model.numeric,
            integer=model.integer,
            nullable=model.nullable,
            classes=model.classes,
            max_records=max_records,
        )
    else:
        schemas = component_schemas(
            features=[], numeric=set(), integer=set(), nullable=set(), classes=[], max_records=1
        )
        schemas["Record"] = {"type": "object"}
        schemas["Label"] = {}
    version = model.version if model is not None else None
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": app_version,
            "description": "Predictions from the champion mlmedic serves"
            + (f" (v{version}: features and classes below are that version's)." if version else ".")
            + " The schema is rebuilt when the served version changes.",
        },
        "paths": guard(
            {
                **paths(max_body_bytes=max_body_bytes, version=version),
                **mlflow_paths(max_records=max_records, max_body_bytes=max_body_bytes),
                **v2_paths(name=model_name, version=version, max_records=max_records),
            },
            guarded,
        ),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


__all__ = [
    "NUMBER_LIMIT",
    "NUMBER_LIMIT_INT",
    "REQUEST_ID_PATTERN",
    "component_schemas",
    "document",
    "label_schema",
    "record_schema",
]
