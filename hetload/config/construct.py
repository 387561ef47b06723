"""Importing and constructing what a config names, with errors that name the config key."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hetload.config.load import ConfigError, LoaderConfig
from hetload.config.types import closest
from hetload.guards import shown

__all__ = ["attr", "construct", "import_code", "params", "require"]


def require(module: str, section: str, config: LoaderConfig) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{config.source}: {section}: needs {module}, which is not available ({exc})"
        ) from None


def attr(module: Any, name: str, section: str, config: LoaderConfig) -> Any:
    value = getattr(module, name, None)
    if value is None:
        raise ConfigError(
            f"{config.source}: {section}: {module.__name__}.{name} is not available in this "
            "hetload build"
        )
    return value


def import_code(ref: str, where: str, config: LoaderConfig) -> Callable:
    """The callable named ``module:function`` (allowed by the validator only with custom code)."""
    if not config.allow_custom_code:
        raise config.error(where, f"{shown(ref)} is custom code, which was not allowed")
    module_name, qualname = ref.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise config.error(where, f"cannot import {shown(module_name)} ({exc})") from None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise config.error(where, f"{shown(module_name)} has no {shown(qualname)}")
    if not callable(obj):
        raise config.error(where, f"{shown(ref)} is not callable")
    return obj


def construct(cls: Callable, args: tuple, kwargs: dict[str, Any], where: str, config) -> Any:
    """``cls(*args, **kwargs)``, an unknown keyword named with the closest valid one."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params and not takes_any:
        valid = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        for name in kwargs:
            if name not in params:
                guess = closest(name, valid)
                hint = f"; did you mean {guess!r}?" if guess else ""
                raise config.error(
                    where,
                    f"{getattr(cls, '__name__', cls)} has no argument {shown(name)}{hint} "
                    f"Valid: {', '.join(valid)}",
                )
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise config.error(where, str(exc)) from exc


def params(cls: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
