"""What a request may carry: its body read within the size limit and parsed strictly (no NaN or
Infinity tokens, no nesting too deep), its records checked against the served version's
features and types, and the request ids this server issues and accepts back."""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic_core import from_json

from mlmedic.core.errors import ApiError, InvalidRequest, MedicError, PayloadTooLarge
from mlmedic.model.local import LoadedModel
from mlmedic.serving.openapi import NUMBER_LIMIT, NUMBER_LIMIT_INT

DRAIN_LIMIT = 16 * 1024 * 1024

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


async def json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, refused with 413 past ``limit`` bytes (drained first, so the
    client reads the answer instead of a reset)."""
    return parse_json(await raw_body(request, limit))


async def raw_body(request: Request, limit: int) -> bytearray:
    """The request's body as sent, within ``limit`` bytes (413 past it); its fingerprint kept."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_LIMIT:  # read it, so the client gets the 413, not a reset
            async for _ in request.stream():
                pass
        raise PayloadTooLarge(f"request body of {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
    # the body's fingerprint (CRC-32 of the bytes the client sent): named in the evidence when
    # a model crashes on this input, and computable by the client
    request.state.fingerprint = zlib.crc32(body)
    return body


def error_response(
    exc: MedicError, body: dict[str, Any], status: int | None = None
) -> JSONResponse:
    """``body`` as the answer to ``exc``: its status (or ``status``), and ``Retry-After`` when
    it says when to come back — one shape of headers for mlmedic's API and both protocols."""
    retry = getattr(exc, "retry_after", None)
    headers = {"retry-after": str(retry)} if retry else None
    return JSONResponse(body, status or exc.status_code, headers=headers)


# ---------------------------------------------------------------------- validation
def records_of(body: Any, limit: int) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "records" in body:
        records = body["records"]
        if not isinstance(records, list):
            raise InvalidRequest("'records' must be a list of objects")
        if len(body) > 1:
            other = sorted(k for k in body if k != "records")[0]
            raise InvalidRequest(f"unknown field '{other}' beside 'records'")
    elif isinstance(body, dict):
        records = [body]
    elif isinstance(body, list):
        records = body
    else:
        raise InvalidRequest('expected a JSON object, or {"records": [...]}')
    if not records:
        raise InvalidRequest("no records to predict")
    if len(records) > limit:
        raise PayloadTooLarge(f"{len(records)} records in one request; the limit is {limit}")
    return records


def validate_records(records: list[Any], model: LoadedModel) -> dict[str, list[Any]]:
    """Records as feature columns (plain lists), or ``ApiError(422)`` naming the first bad field.

    Pure Python on purpose: a DataFrame per request would cost more than the model call; the
    batcher builds one frame per batch.
    """
    features = model.features
    expected = set(features)
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidRequest(f"records[{position}]: expected an object of feature values")
        if record.keys() != expected:
            unknown = sorted(set(record) - expected)
            if unknown:
                raise InvalidRequest(f"records[{position}]: unknown field '{unknown[0]}'")
            missing = [name for name in features if name not in record]
            raise InvalidRequest(f"records[{position}]: missing field '{missing[0]}'")
        for name in features:
            columns[name].append(record[name])
    return validate_columns(columns, model, "records[{row}].{name}")


def validate_columns(
    columns: dict[str, list[Any]], model: LoadedModel, where: str
) -> dict[str, list[Any]]:
    """Columns of the model's features (plain lists of one length, as a protocol's tensors or
    the records carry them) checked value by value and made what the model reads: finite floats
    for numbers (NaN for a null the contract allows), strings for categories. ``where`` names a
    value in an error (``{row}`` and ``{name}``). The lists are replaced, not changed."""
    checked: dict[str, list[Any]] = {}
    for name in model.features:
        values = columns[name]
        numeric = name in model.numeric
        nullable = name in model.nullable
        integer = name in model.integer
        out: list[Any] = []
        for row, value in enumerate(values):
            if value is None:
                if not nullable:
                    raise InvalidRequest(
                        f"{where.format(row=row, name=name)}: missing value (null), and the "
                        "model's data contract has no missing values in this column"
                    )
                out.append(math.nan if numeric else None)
            elif numeric:
                try:
                    out.append(_number(value, integer))
                except _Refused as why:
                    raise InvalidRequest(f"{where.format(row=row, name=name)}: {why}") from None
            elif isinstance(value, str):
                out.append(value)
            else:
                raise InvalidRequest(
                    f"{where.format(row=row, name=name)}: expected a string, "
                    f"got {type(value).__name__}"
                )
        checked[name] = out
    return checked


class _Refused(Exception):
    """Why a value is not a number the model takes (the caller says where)."""


def _number(value: Any, integer: bool) -> float:
    """A JSON number as a finite float64, or ``_Refused`` saying why not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"expected a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) > NUMBER_LIMIT_INT:
        raise _Refused("number out of range (the limit is 1e300)")
    number = float(value)
    if not math.isfinite(number):
        raise _Refused(f"expected a finite number, got {value!r}")
    if abs(number) > NUMBER_LIMIT:
        raise _Refused("number out of range (the limit is 1e300)")
    if integer and not number.is_integer():
        raise _Refused(f"expected an integer, got {value!r}")
    return number


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"request body has {name}: only finite numbers are accepted")


def parse_json(body: bytes | bytearray) -> Any:
    """The request body as JSON; ``ApiError(422)`` for anything that is not plain, finite JSON
    (NaN and Infinity tokens, numbers too long to read, nesting too deep to parse).

    Parsed by pydantic-core's parser (what FastAPI's own validation runs on; four times the
    standard library's speed on a one-record body); a body it refuses is read again by the
    standard one, only to say why."""
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as refused:
        if "recursion limit" in str(refused):
            raise InvalidRequest("request body is nested too deeply") from None
    try:
        json.loads(body, parse_constant=_reject_constant)
    except ApiError:
        raise
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidRequest("request body is not valid JSON")
