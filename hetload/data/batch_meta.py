"""A batch's ``.json`` members: parsed together, and each sample's field order from them.

:func:`decode_metas` gives what :func:`hetload.shards.format.decode_meta` gives each member, or
``None`` (the per-sample path then reads the batch and reports what is wrong): the members are
decoded as one text and each parsed where it starts, which must be exactly one JSON object
ending where the member ends. :func:`sample_layouts` gives each sample's field order and
non-array values, as :func:`hetload.shards.format.decode_sample` orders them; the order depends
only on which names a sample's ``.json`` lists and which arrays it holds, so it is worked out
once per such form and reused (a dataset has few).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hetload.keys import sample_key

__all__ = ["decode_metas", "sample_layouts"]

# json.loads(text) is this decoder's decode(text) (the default settings); scan_once parses one
# value at a position, without decode's whitespace and trailing-data steps
_SCAN = json.JSONDecoder().scan_once
#: layout forms kept (each a few names); cleared when full
_FORMS_MAX = 4096
_FORMS: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...], bool] | None] = {}


def decode_metas(payloads: Sequence[bytes | memoryview]) -> list[dict[str, Any]] | None:
    """Each ``.json`` member in ``payloads`` parsed, as ``decode_meta`` parses it; ``None``
    where any is not exactly one JSON object with an ``"arrays"`` list (and an ``"extra"``
    dict, if any) in plain UTF-8 (``decode_meta`` also takes a BOM, UTF-16, whitespace around:
    the per-sample path then reads those)."""
    joined = b"".join(payloads)
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) == len(joined):  # ASCII: a member's bytes are its characters
        texts, starts = [text] * len(payloads), []
        at = 0
        for payload in payloads:
            starts.append(at)
            at += len(payload)
    else:  # decoded one by one: a character's bytes may not straddle two members
        try:
            texts = [bytes(payload).decode("utf-8") for payload in payloads]
        except UnicodeDecodeError:
            return None
        starts = [0] * len(payloads)
    metas = []
    for text, start, payload in zip(texts, starts, payloads, strict=True):
        try:
            meta, end = _SCAN(text, start)
        except (StopIteration, ValueError, RecursionError):
            return None
        if (
            end != start + len(payload)
            or not isinstance(meta, dict)
            or not isinstance(meta.get("arrays"), list)
            or not isinstance(meta.get("extra", {}), dict)
        ):
            return None
        metas.append(meta)
    return metas


def sample_layouts(
    metas: list[dict[str, Any]],
    fields: Sequence[str] | None,
    holds: list[tuple[str, ...]],
) -> tuple[list[list[str]], list[dict[str, Any]]] | None:
    """Per sample (``.json`` ``metas[j]``, array fields read ``holds[j]``): the field order
    and the non-array values ``decode_sample`` gives it; ``None`` where it would raise (a
    listed field missing) or where the arrays read are not exactly those it returns."""
    wanted = None if fields is None else tuple(fields)
    orders: list[list[str]] = []
    values: list[dict[str, Any]] = []
    for meta, held in zip(metas, holds, strict=True):
        extra = meta.get("extra", {})
        own = meta.get("key")
        has_key = isinstance(own, str) or isinstance(meta.get("source"), str)
        form_key = (None if wanted is not None else tuple(meta["arrays"]), tuple(extra), wanted,
                    held, has_key)  # fmt: skip
        form = _FORMS.get(form_key, False)
        if form is False:
            form = _form(*form_key)
            if len(_FORMS) >= _FORMS_MAX:
                _FORMS.clear()
            _FORMS[form_key] = form
        if form is None:
            return None
        order, taken, add_key = form
        own_values = {name: extra[name] for name in taken}
        if add_key:
            own_values["key"] = own if isinstance(own, str) else sample_key(meta["source"])
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
