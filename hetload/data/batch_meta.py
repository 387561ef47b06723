"""A batch's ``.json`` members, and each sample's field order and values from them.

:func:`sample_layouts` parses each member as :func:`hetload.shards.format.decode_meta` does
(the same JSON decoder, the same checks) and gives each sample's field order and non-array
values as :func:`hetload.shards.format.decode_sample` orders them, or ``None`` (the per-sample
path then reads the batch and reports what is wrong). The order depends only on which names a
sample's ``.json`` lists and which arrays it holds, so it is worked out once per such form and
reused (a dataset has few).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hetload.keys import sample_key

__all__ = ["sample_layouts"]

# json.loads(text) is this decoder's decode(text) (the default settings); scan_once parses one
# value at a position, without decode's whitespace and trailing-data steps
_SCAN = json.JSONDecoder().scan_once
#: layout forms kept (each a few names); cleared when full
_FORMS_MAX = 4096
_FORMS: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...], bool] | None] = {}


def sample_layouts(
    payloads: Sequence[bytes | memoryview],
    fields: Sequence[str] | None,
    holds: list[tuple[str, ...]],
) -> tuple[list[list[str]], list[dict[str, Any]]] | None:
    """Per sample (its ``.json`` member's bytes ``payloads[j]``, the array fields read
    ``holds[j]``): the field order and the non-array values ``decode_sample`` gives it.

    ``None`` where ``decode_meta`` or ``decode_sample`` would raise, or where the arrays read
    are not exactly those it returns, and also where a ``.json`` is not exactly one JSON
    object in plain UTF-8 (``decode_meta`` also takes a BOM, UTF-16, whitespace around): the
    per-sample path then reads the batch and names what is wrong."""
    wanted = None if fields is None else tuple(fields)
    orders: list[list[str]] = []
    values: list[dict[str, Any]] = []
    for payload, held in zip(payloads, holds, strict=True):
        try:
            text = str(payload, "utf-8")
            meta, end = _SCAN(text, 0)
        except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
            return None
        # decode_meta's checks (json.loads gives exact dicts and lists)
        if end != len(text) or type(meta) is not dict:
            return None
        arrays, extra = meta.get("arrays"), meta.get("extra", {})
        if type(arrays) is not list or type(extra) is not dict:
            return None
        own, source = meta.get("key"), meta.get("source")
        has_key = type(own) is str or type(source) is str
        names = tuple(extra) if extra else ()
        key = (None if wanted is not None else tuple(arrays), names, wanted, held, has_key)
        form = _FORMS.get(key, False)
        if form is False:
            form = _form(*key)
            if len(_FORMS) >= _FORMS_MAX:
                _FORMS.clear()
            _FORMS[key] = form
        if form is None:
            return None
        order, taken, add_key = form
        own_values = {name: extra[name] for name in taken} if taken else {}
        if add_key:
            own_values["key"] = own if type(own) is str else sample_key(source)
        orders.append(list(order))
        values.append(own_values)
    return orders, values


def _form(
    arrays: tuple[Any, ...] | None,
    extra: tuple[str, ...],
    fields: tuple[str, ...] | None,
    held: tuple[str, ...],
    has_key: bool,
) -> tuple[tuple[str, ...], tuple[str, ...], bool] | None:
    """A sample's field order, the names whose values come from its ``"extra"``, and whether
    its ``"key"`` is added, from the names alone (as ``decode_sample`` orders them): the
    ``.json``'s ``arrays`` (only read when ``fields`` is ``None``) and ``extra`` names, the
    selected ``fields``, the arrays ``held``, whether the ``.json`` gives a key."""
    extra_names = set(extra)
    held_names = set(held)
    wanted = list(fields) if fields is not None else sorted(set(arrays or ()) | extra_names)
    order: list[str] = []
    taken: list[str] = []
    for name in wanted:
        if name in held_names:
            order.append(name)
        elif name in extra_names:
            order.append(name)
            taken.append(name)
        else:
            return None  # a missing member: the per-sample path reports it
    if held_names - set(order):
        return None
    if "label" in extra_names and "label" not in taken and "label" not in held_names:
        order.append("label")
        taken.append("label")
    add_key = has_key and "key" not in taken and "key" not in held_names
    if add_key:
        order.append("key")
    return tuple(order), tuple(taken), add_key
