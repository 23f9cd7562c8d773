"""The Open Inference Protocol (v2), as KServe, MLServer and Triton clients speak it (#22):
``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``
(metadata), ``.../ready`` and ``POST .../infer``.

A request's inputs are the model's features, one tensor each (shape ``[N]`` or ``[N, 1]``;
numbers as ``FP64``/``FP32``/``INT64``/… and text as ``BYTES``), in JSON or with the binary
data extension (``Inference-Header-Content-Length``) that ``tritonclient`` uses by default. The
outputs are ``predict`` (the labels: ``INT64``, ``FP64``, ``BOOL`` or ``BYTES``, shape ``[N]``)
and ``predict_proba`` (``FP64``, ``[N, classes]``), always in JSON. Errors are ``{"error": ...}``:
400 for a request the model cannot take, 404 for a model or version this server does not serve.
Validation, the micro-batcher, the token, the prediction log (the request's ``id``, or a new one,
is the id ``/feedback`` takes) and the metrics are ``/predict``'s."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.core.errors import ApiError, InvalidRequest, NotReady
from mlmedic.model.tasks import Task
from mlmedic.serving.requests import REQUEST_ID, error_response, parse_json, raw_body
from mlmedic.serving.routes.predictions import score
from mlmedic.serving.state import state_of

router = APIRouter()

NUMPY = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset((*NUMPY, "BYTES"))
OUTPUTS = ("predict", "predict_proba")


class NotServed(ApiError):
    """A model name or version this server does not serve."""

    status_code = 404


def _error(exc: ApiError) -> JSONResponse:
    return error_response(exc, {"error": exc.message}, 400 if exc.status_code == 422 else None)


def _served(request: Request, name: str, version: str | None) -> Any:
    """The served model when ``name`` (and ``version``) name it, else ``NotServed``."""
    state = state_of(request)
    model = state.model
    if model is None:
        raise NotReady("no model is loaded yet")
    if name != state.source.model_name:
        raise NotServed(
            f"model '{name}' is not served here; this server serves '{state.source.model_name}'"
        )
    if version is not None and version != str(model.version):
        raise NotServed(f"version {version} of '{name}' is not served; v{model.version} is")
    return model


@router.get("/v2")
async def server_metadata() -> dict[str, Any]:
    from mlmedic import __version__

    return {"name": "mlmedic", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    loaded = state_of(request).model is not None
    return JSONResponse({"ready": loaded}, 200 if loaded else 503)


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str, version: str | None = None) -> JSONResponse:
    try:
        model = _served(request, name, version)
    except ApiError as exc:
        return _error(exc)
    integer = set(model.integer)
    inputs = [
        {
            "name": feature,
            "datatype": ("INT64" if feature in integer else "FP64")
            if feature in model.numeric
            else "BYTES",
            "shape": [-1],
        }
        for feature in model.features
    ]
    outputs = [{"name": "predict", "datatype": _label_type(model.classes), "shape": [-1]}]
    if model.task.probabilities:  # a regression answers numbers only
        outputs.append(
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]}
        )
    return JSONResponse(
        {
            "name": name,
            "versions": [str(model.version)],
            "platform": "mlmedic",
            "inputs": inputs,
            "outputs": outputs,
        }
    )


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    try:
        _served(request, name, version)
    except ApiError as exc:
        return _error(exc)
    return JSONResponse({"name": name, "ready": True})


@router.post("/v2/models/{name}/infer")
@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(request: Request) -> JSONResponse:
    """Read from the path itself (no parameters for FastAPI to solve): the scoring lane calls
    this directly (``serving.lane``)."""
    state = state_of(request)
    name, version = request.path_params["name"], request.path_params.get("version")
    try:
        model = _served(request, name, version)
        body = await raw_body(request, state.config.max_body_bytes)
        header, tensors = _split_binary(request, body)
        if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
            raise InvalidRequest("expected a JSON object with an 'inputs' list")
        columns, rows = _columns(header["inputs"], tensors, model.features)
        if rows > state.config.max_records_per_request:
            raise InvalidRequest(
                f"{rows} rows in one request; the limit is {state.config.max_records_per_request}"
            )
        wanted = _wanted(header.get("outputs"), model.task)
        given = header.get("id")
        request_id = given if isinstance(given, str) and REQUEST_ID.fullmatch(given) else None
        done = await score(request, None, "/v2/infer", request_id=request_id, columns=columns)
    except ApiError as exc:
        return _error(exc)
    if done.failed:  # a tensor has no place for a missing answer: the request fails whole
        first = min(done.failed)
        return _error(InvalidRequest(f"row {first}: {done.failed[first]}"))
    outputs: list[dict[str, Any]] = []
    if "predict" in wanted:
        kind = _label_type(done.classes)
        labels = [str(v) for v in done.labels] if kind == "BYTES" else done.labels
        outputs.append({"name": "predict", "datatype": kind, "shape": [rows], "data": labels})
    if "predict_proba" in wanted:
        probabilities = np.asarray(done.probabilities, dtype=float)
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [rows, probabilities.shape[1]],
                "data": probabilities.ravel().tolist(),
                "parameters": {"classes": [str(c) for c in done.classes]},
            }
        )
    return JSONResponse(
        {
            "model_name": name,
            "model_version": str(done.version),
            "id": done.request_id,
            "outputs": outputs,
        },
        headers={"x-request-id": done.request_id},
    )


def _label_type(classes: list[Any]) -> str:
    if not classes:  # a regression's numbers
        return "FP64"
    if all(isinstance(c, bool | np.bool_) for c in classes):
        return "BOOL"
    if all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, float | np.floating) for c in classes):
        return "FP64"
    return "BYTES"


def _wanted(outputs: Any, task: Task) -> list[str]:
    offered = task.outputs_offered
    if outputs is None:
        return list(offered)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidRequest("'outputs' must be a list of objects with a 'name'")
    names = [o.get("name") for o in outputs]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidRequest(f"unknown output {unknown[0]!r} (one of {', '.join(OUTPUTS)})")
    if "predict_proba" in names and "predict_proba" not in offered:
        raise InvalidRequest("'predict_proba': a regression model answers 'predict' (numbers) only")
    return [str(n) for n in names]


def _split_binary(request: Request, body: bytearray) -> tuple[Any, bytes]:
    """(the JSON header, the binary tensor data after it) — the binary data extension."""
    length = request.headers.get("inference-header-content-length")
    if length is None:
        return parse_json(body), b""
    if not length.isdigit() or int(length) > len(body):
        raise InvalidRequest("Inference-Header-Content-Length is not the header's length")
    return parse_json(body[: int(length)]), bytes(body[int(length) :])


def _columns(
    inputs: list[Any], binary: bytes, features: list[str]
) -> tuple[dict[str, list[Any]], int]:
    """(one column per feature, the number of rows) from one tensor per feature. Checked once
    per tensor with plain comparisons: a request of twenty one-value tensors is mostly this."""
    known = set(features)
    columns: dict[str, list[Any]] = {}
    offset = 0
    for position, tensor in enumerate(inputs):
        name = tensor.get("name") if type(tensor) is dict else None
        if type(name) is not str:
            raise InvalidRequest(f"inputs[{position}]: expected an object with a 'name'")
        if name not in known:
            raise InvalidRequest(
                f"inputs[{position}]: unknown input '{name}' (the inputs are the features)"
            )
        if name in columns:
            raise InvalidRequest(f"inputs[{position}]: input '{name}' is given twice")
        kind = tensor.get("datatype")
        if type(kind) is not str or kind not in DATATYPES:
            raise InvalidRequest(f"inputs[{position}]: unknown datatype {kind!r}")
        shape = tensor.get("shape")
        if not _shape_ok(shape):
            raise InvalidRequest(
                f"inputs[{position}]: shape must be [rows] or [rows, 1], got {shape!r}"
            )
        parameters = tensor.get("parameters")
        if parameters is not None and type(parameters) is not dict:
            raise InvalidRequest(f"inputs[{position}]: 'parameters' must be an object")
        size = parameters.get("binary_data_size") if parameters else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidRequest(f"inputs[{position}]: binary_data_size runs past the body")
            values = _decode(binary[offset : offset + size], kind, f"inputs[{position}]")
            offset += size
        else:
            values = _flat(tensor.get("data"), f"inputs[{position}]")
        if len(values) != shape[0]:  # a negative count never matches
            raise InvalidRequest(f"inputs[{position}]: {len(values)} values for shape {shape}")
        columns[name] = values
    if len(columns) != len(known):
        missing = [name for name in features if name not in columns]
        raise InvalidRequest(f"missing input '{missing[0]}' (one tensor per feature)")
    rows = {len(values) for values in columns.values()}
    if len(rows) != 1 or 0 in rows:
        raise InvalidRequest("every input must have the same, non-zero number of rows")
    return columns, rows.pop()


def _shape_ok(shape: Any) -> bool:
    """``[rows]`` or ``[rows, 1]`` (any trailing ones), rows an integer (a negative one matches
    no data)."""
    if type(shape) is not list or not shape or type(shape[0]) is not int:
        return False
    return all(type(n) is int and n == 1 for n in shape[1:])


def _flat(data: Any, where: str) -> list[Any]:
    """A tensor's ``data``, row-major: nested lists (shape ``[rows, 1]``) flattened; a flat list
    is used as it is (the validation makes its own lists)."""
    if type(data) is not list:
        raise InvalidRequest(f"{where}: 'data' must be a list")
    for item in data:
        if type(item) is list:
            break
    else:
        return data
    flat: list[Any] = []
    for item in data:
        if type(item) is list:
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def _decode(raw: bytes, kind: str, where: str) -> list[Any]:
    if kind != "BYTES":
        dtype = np.dtype(NUMPY[kind])
        if len(raw) % dtype.itemsize:
            raise InvalidRequest(f"{where}: {len(raw)} bytes is no whole number of {kind}")
        values = np.frombuffer(raw, dtype=dtype)
        return [v.item() for v in values]
    found, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InvalidRequest(f"{where}: a BYTES element is cut off")
        size = int.from_bytes(raw[at : at + 4], "little")
        text = raw[at + 4 : at + 4 + size]
        if len(text) != size:
            raise InvalidRequest(f"{where}: a BYTES element is cut off")
        try:
            found.append(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(f"{where}: a BYTES element is not UTF-8 text") from None
        at += 4 + size
    return found
