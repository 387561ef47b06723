"""The config type of ``device.transforms``: a list of batched steps, checked by building them."""

from __future__ import annotations

from typing import Any

from hetload.config.types import Context, Invalid, Type


class BatchedSteps(Type):
    """``Name`` or ``{Name: {arg: value}}`` entries of :mod:`hetload.batched.pipeline`."""

    def check(self, value: Any, ctx: Context) -> list[Any]:
        from hetload.batched.pipeline import build

        if value is None:
            return []
        if not isinstance(value, list):
            raise Invalid(f"expected {self.describe()}, got {value!r}")
        try:
            build(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return value

    def describe(self) -> str:
        return "a list of `Name` or `{Name: {arg: value}}` of hetload.batched"
