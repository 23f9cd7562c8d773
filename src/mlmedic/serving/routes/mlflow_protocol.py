"""MLflow's scoring protocol on the same port, as ``mlflow models serve`` speaks it (#22):
``GET /ping``, ``GET /version`` and ``POST /invocations`` with ``dataframe_split``,
``dataframe_records``, ``instances`` or ``inputs`` (JSON) or a CSV body (``text/csv``), and
``params: {"output": "probabilities"}``. The answer is MLflow's ``{"predictions": [...]}`` —
labels, or one ``{class: probability}`` object per row — and its errors are MLflow's
``{"error_code": ..., "message": ...}`` with status 400. The request id (for ``/feedback``) and
the version that answered are in the ``x-request-id`` and ``x-model-version`` headers, so the
body stays what an MLflow client reads. Validation, the micro-batcher, the token, the
prediction log and the metrics are ``/predict``'s."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from mlmedic.core.errors import ApiError, InvalidRequest
from mlmedic.serving.requests import error_response, parse_json, raw_body
from mlmedic.serving.routes.predictions import score
from mlmedic.serving.state import state_of

router = APIRouter()

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
OUTPUTS = ("labels", "probabilities")


@router.get("/ping")
async def ping() -> PlainTextResponse:
    """MLflow's health check: 200 with an empty line."""
    return PlainTextResponse("\n")


@router.get("/version")
async def version() -> PlainTextResponse:
    """The MLflow version the models are logged with (what ``mlflow models serve`` answers)."""
    from importlib.metadata import version as installed

    return PlainTextResponse(installed("mlflow"))


@router.post("/invocations")
async def invocations(request: Request) -> JSONResponse:
    state = state_of(request)
    try:
        body = await raw_body(request, state.config.max_body_bytes)
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind == "text/csv":
            records, output = _csv_records(bytes(body), state), "labels"
        elif kind in ("application/json", ""):
            records, output = _json_records(parse_json(body))
        else:
            raise InvalidRequest(
                f"content type {kind!r} is not supported: send application/json or text/csv"
            )
        if len(records) > state.config.max_records_per_request:
            raise InvalidRequest(
                f"{len(records)} records in one request; the limit is "
                f"{state.config.max_records_per_request}"
            )
        model = state.model
        if output == "probabilities" and model is not None and not model.task.probabilities:
            raise InvalidRequest(
                "params.output 'probabilities': this is a regression model; it answers numbers"
            )
        done = await score(request, records, "/invocations")
    except ApiError as exc:
        return _error(exc)
    if output == "probabilities":
        names = [str(c) for c in done.classes]
        rows = np.asarray(done.probabilities, dtype=float).tolist()  # unrounded, as MLflow
        predictions: list[Any] = [
            None if i in done.failed else dict(zip(names, row, strict=True))
            for i, row in enumerate(rows)
        ]
    else:
        predictions = done.labels
    headers = {"x-request-id": done.request_id, "x-model-version": str(done.version)}
    return JSONResponse({"predictions": predictions}, headers=headers)


def _error(exc: ApiError) -> JSONResponse:
    """MLflow's error shape; a client's mistake is 400 (as MLflow answers), the rest keep
    their status (413, 503 with Retry-After, 401)."""
    status = 400 if exc.status_code == 422 else exc.status_code
    code = "BAD_REQUEST" if status == 400 else "TEMPORARILY_UNAVAILABLE" if status == 503 else ""
    body = {"error_code": code or "INVALID_PARAMETER_VALUE", "message": exc.message}
    return error_response(exc, body, status)


def _json_records(body: Any) -> tuple[list[Any], str]:
    """(records, the output asked for) from one of MLflow's four JSON formats."""
    if not isinstance(body, dict):
        raise InvalidRequest("expected a JSON object with one of the fields " + ", ".join(FORMATS))
    found = [key for key in FORMATS if key in body]
    if len(found) != 1:
        raise InvalidRequest(
            "expected exactly one of the fields " + ", ".join(FORMATS) + f", got {sorted(body)}"
        )
    unknown = sorted(set(body) - {found[0], "params"})
    if unknown:
        raise InvalidRequest(f"unknown field '{unknown[0]}' beside '{found[0]}'")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise InvalidRequest("'params' must be an object")
    if set(params) - {"output"}:
        raise InvalidRequest(f"unknown param '{sorted(set(params) - {'output'})[0]}'")
    output = params.get("output", "labels")
    if output not in OUTPUTS:
        raise InvalidRequest(f"params.output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    data = body[found[0]]
    if found[0] == "dataframe_split":
        return _split(data), output
    if isinstance(data, dict):  # instances/inputs as columns: {"age": [..], ...}
        return _columns_to_records(data, found[0]), output
    if not isinstance(data, list) or not data:
        raise InvalidRequest(f"'{found[0]}' must be a non-empty list of records")
    return data, output


def _split(data: Any) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise InvalidRequest("'dataframe_split' must be an object with 'columns' and 'data'")
    columns, rows = data["columns"], data.get("data")
    if not isinstance(rows, list) or not rows:
        raise InvalidRequest("'dataframe_split.data' must be a non-empty list of rows")
    records = []
    for position, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidRequest(
                f"dataframe_split.data[{position}]: expected a list of {len(columns)} values"
            )
        records.append(dict(zip((str(c) for c in columns), row, strict=True)))
    return records


def _columns_to_records(data: dict[str, Any], where: str) -> list[Any]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        raise InvalidRequest(f"'{where}' as columns must be lists of one non-zero length")
    rows = lengths.pop()
    return [{name: values[i] for name, values in data.items()} for i in range(rows)]


def _csv_records(body: bytes, state: Any) -> list[Any]:
    """A CSV body with a header row: numbers for the model's numeric features, an empty field
    as missing."""
    model = state.model
    numeric = set(model.numeric) if model is not None else set()
    try:
        reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequest(f"the CSV body cannot be read: {exc}") from None
    if not rows:
        raise InvalidRequest("the CSV body has no rows under its header")
    records = []
    for position, row in enumerate(rows):
        if None in row:
            raise InvalidRequest(f"CSV row {position + 1}: more fields than the header names")
        record: dict[str, Any] = {}
        for name, text in row.items():
            if text == "" or text is None:
                record[name] = None
            elif name in numeric:
                try:
                    record[name] = float(text)
                except ValueError:
                    raise InvalidRequest(
                        f"CSV row {position + 1}, column {name}: expected a number, got {text!r}"
                    ) from None
            else:
                record[name] = text
        records.append(record)
    return records
