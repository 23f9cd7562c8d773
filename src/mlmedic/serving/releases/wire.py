"""What workers and the release host say to each other (#31): where (``address``: a Unix
socket in the abstract namespace, answering only the project's own user, ``same_user``), and
what — typed, versioned messages, one JSON document per line, written and parsed only here.

- ``ShadowRows`` (worker → host, never answered): one or more model calls' requests for the
  shadow — their ids, each request's row count, and the rows' columns;
- ``CanaryAsk`` (worker → host): one canary request's columns, numbered on its connection;
- ``CanaryAnswer`` (host → worker): the candidate's labels and outputs for that number, or the
  error it raised.

Every line carries ``"v": WIRE_VERSION``; a line of another version, or one whose fields are
missing or of the wrong type, is a ``WireError`` (counted by the side that read it, never
acted on).

Examples:
    >>> line = encode(CanaryAsk(7, {"age": [30]}))
    >>> parse_request(line)
    CanaryAsk(number=7, columns={'age': [30]})
    >>> parse_answer(b'{"v": 1, "t": "a", "n": "seven"}')
    Traceback (most recent call last):
    ...
    mlmedic.serving.releases.wire.WireError: a canary answer's 'n' must be a whole number
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.core.jsonvalues import plain

WIRE_VERSION = 1


class WireError(ValueError):
    """A line that is not a message of this version."""


@dataclass(frozen=True)
class ShadowRows:
    ids: list[str]
    rows: list[int]  # rows of each request, in order
    columns: dict[str, list[Any]]  # every request's rows, concatenated


@dataclass(frozen=True)
class CanaryAsk:
    number: int
    columns: dict[str, list[Any]]


@dataclass(frozen=True)
class CanaryAnswer:
    number: int
    ok: bool
    labels: list[Any] = field(default_factory=list)
    outputs: list[list[float]] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    error: str = ""


def address(state_dir: Path) -> str:
    """The host's socket: abstract (Linux), named by the project's state folder."""
    digest = hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
    return f"\0mlmedic-release-{digest}"


def same_user(sock: Any) -> bool:
    """Whether the peer of a Unix socket runs as this process's user (``SO_PEERCRED``): only
    the project's own workers may feed or ask the candidate."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return False
    return int(struct.unpack("3i", raw)[1]) == os.getuid()


def encode(message: ShadowRows | CanaryAsk | CanaryAnswer) -> bytes:
    """One line for ``message``."""
    body: dict[str, Any]
    if isinstance(message, ShadowRows):
        body = {"t": "s", "ids": message.ids, "rows": message.rows, "columns": message.columns}
    elif isinstance(message, CanaryAsk):
        body = {"t": "c", "n": message.number, "columns": message.columns}
    else:
        body = {
            "t": "a",
            "n": message.number,
            "ok": message.ok,
            "labels": message.labels,
            "outputs": message.outputs,
            "classes": message.classes,
            "error": message.error,
        }
    document = {"v": WIRE_VERSION, **body}
    return json.dumps(document, separators=(",", ":"), default=plain).encode() + b"\n"


def _document(line: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(line)
    except ValueError:
        raise WireError(f"a {what} is not JSON") from None
    if not isinstance(found, dict):
        raise WireError(f"a {what} must be a JSON object")
    if found.get("v") != WIRE_VERSION:
        raise WireError(f"a {what} of wire version {found.get('v')!r}, not {WIRE_VERSION}")
    return found


_WANTED = {int: "a whole number", list: "a list", dict: "an object", bool: "true or false"}


def _field(found: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = found.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise WireError(f"a {what}'s {name!r} must be {_WANTED[kind]}")
    return value


def _columns(found: dict[str, Any], rows: int | None, what: str) -> dict[str, list[Any]]:
    columns = _field(found, "columns", dict, what)
    for name, values in columns.items():
        if not isinstance(values, list) or (rows is not None and len(values) != rows):
            raise WireError(f"a {what}'s column {name!r} does not hold one value per row")
    return columns


def parse_request(line: bytes) -> ShadowRows | CanaryAsk:
    """A worker's line, as the host reads it."""
    found = _document(line, "worker's message")
    kind = found.get("t")
    if kind == "s":
        what = "shadow message"
        ids, rows = _field(found, "ids", list, what), _field(found, "rows", list, what)
        if len(ids) != len(rows) or not all(isinstance(i, str) for i in ids):
            raise WireError("a shadow message needs one string id per request")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in rows):
            raise WireError("a shadow message's row counts must be whole numbers")
        return ShadowRows(ids, rows, _columns(found, sum(rows), what))
    if kind == "c":
        number = _field(found, "n", int, "canary request")
        return CanaryAsk(number, _columns(found, None, "canary request"))
    raise WireError(f"a worker's message of unknown type {kind!r}")


def parse_answer(line: bytes) -> CanaryAnswer:
    """The host's line, as a worker reads it."""
    what = "canary answer"
    found = _document(line, what)
    number = _field(found, "n", int, what)
    ok = _field(found, "ok", bool, what)
    if not ok:
        return CanaryAnswer(number, False, error=str(found.get("error", "")))
    labels, outputs = _field(found, "labels", list, what), _field(found, "outputs", list, what)
    if len(outputs) != len(labels):
        raise WireError("a canary answer needs one output row per label")
    return CanaryAnswer(number, True, labels, outputs, list(found.get("classes") or []))
