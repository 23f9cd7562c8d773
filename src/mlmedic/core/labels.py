"""Labels as the model knows them: ``1``, ``1.0`` and ``"1"`` are the same class.

A CSV read back as floats (``0.0/1.0``), a Parquet file with ints (``0/1``) and a JSON client
sending strings must all meet the model's ``classes_``. Anything that matches no class is
reported, never guessed.

Examples:
    >>> match_labels([1.0, "0", "banana", None], [0, 1])
    ([1, 0, None, None], ['banana', None])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from mlmedic.core.jsonvalues import plain


def label_key(value: Any) -> str | None:
    """The one canonical text of a label or category value, for comparing values however they
    were read: numbers by value (``1``, ``1.0`` and ``"1"`` are ``"1"``), booleans as themselves
    (``True`` and ``"True"`` are ``"True"``, never ``"1"``), other text stripped; None for a
    missing, non-finite or non-scalar value (it names no class and no category).

    >>> [label_key(v) for v in (1, 1.0, " 1 ", True, "True", 2.5, None, float("nan"))]
    ['1', '1', '1', 'True', 'True', '2.5', None, None]
    """
    if value is None or isinstance(value, dict | list | tuple | set):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text or None
        return label_key(number) if math.isfinite(number) else text
    return str(value).strip() or None  # other scalars (dates, decimals) by their text


def match_labels(values: Iterable[Any], classes: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Each value as the model's class it names (None when it names none), and the values that
    matched no class."""
    by_key = {label_key(c): c for c in classes}
    matched: list[Any] = []
    unmatched: list[Any] = []
    for value in values:
        found = by_key.get(label_key(value)) if label_key(value) is not None else None
        if found is None and label_key(value) not in by_key:
            unmatched.append(value)
            matched.append(None)
        else:
            matched.append(found)
    return matched, unmatched


def accepted_labels(classes: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(JSON value, class) for every label ``/feedback`` takes: each class as its own value and
    as its text (``1`` and ``"1"`` for class 1). The schema's enum and the server's check both
    come from here."""
    pairs: list[tuple[Any, Any]] = []
    for c in classes:
        value, text = plain(c), label_key(c)
        pairs.append((value, c))
        if text is not None and text != value:
            pairs.append((text, c))
    return pairs


def label_for(value: Any, classes: Iterable[Any]) -> Any:
    """The class a label sent to the API names (JSON equality: ``1.0`` is ``1``, but a string is
    never a number and a boolean never a class), or None."""
    if isinstance(value, bool):
        return None
    for accepted, found in accepted_labels(classes):
        if isinstance(accepted, str) == isinstance(value, str) and accepted == value:
            return found
    return None
