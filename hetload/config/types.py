"""Value types of config keys: each checks one value and says in words what it accepts.

A type's ``check(value, ctx)`` returns the value to use (paths resolved, ints kept ints) or raises
:class:`Invalid` with a reason; the validator adds the file and the key. ``describe()`` is the
text of the config reference ("int >= 1", "one of: raise, skip, warn").
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hetload.guards import shown


class Invalid(Exception):
    """A value a type refuses; ``reason`` is a sentence fragment (the validator names the key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """What a check may need: where relative paths start."""

    base_dir: Path


def _shown(value: Any) -> str:
    return shown(value, 60)


def _got(value: Any) -> str:
    return f"got {_shown(value)} ({type(value).__name__})"


class Type:
    #: the type takes a mapping (Either picks the reason of the alternative of a value's shape)
    takes_mapping = False
    #: the type takes a mapping and other shapes too (its reason is the one to show for either)
    takes_any_shape = False

    def check(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def plural(self) -> str:
        """How a list of these reads: "a list of <plural>"."""
        return f"({self.describe()})"


@dataclass(frozen=True)
class Int(Type):
    min: int | None = None
    max: int | None = None

    def check(self, value: Any, ctx: Context) -> int:
        # YAML gives bool for true/false, which Python counts as an int: refuse it
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise Invalid(f"expected {self.describe()}, {_got(value)}")
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise Invalid(f"expected {self.describe()}, got {_shown(value)}")
        if value > INT64_MAX:
            # every int a config gives ends up in an int64 (numpy, torch): an error here, with
            # the key, rather than an OverflowError in the middle of a run
            raise Invalid(f"expected {self.describe()}, got {_shown(value)} (more than 2**63 - 1)")
        return value

    def describe(self) -> str:
        return "an integer" + _range(self.min, self.max)


@dataclass(frozen=True)
class Float(Type):
    min: float | None = None
    max: float | None = None

    def check(self, value: Any, ctx: Context) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected {self.describe()}, {_got(value)}")
        value = float(value)
        if not math.isfinite(value) or (
            (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
        ):
            raise Invalid(f"expected {self.describe()}, got {_shown(value)}")
        return value

    def describe(self) -> str:
        return "a number" + _range(self.min, self.max)


INT64_MAX = 2**63 - 1


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


class Bool(Type):
    def check(self, value: Any, ctx: Context) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, {_got(value)}")
        return value

    def describe(self) -> str:
        return "true or false"


class Str(Type):
    def check(self, value: Any, ctx: Context) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid(f"expected a non-empty string, {_got(value)}")
        return value

    def describe(self) -> str:
        return "a string"

    def plural(self) -> str:
        return "strings"


@dataclass(frozen=True)
class Choice(Type):
    options: tuple[Any, ...]

    def check(self, value: Any, ctx: Context) -> Any:
        if isinstance(value, bool) or value not in self.options:
            hint = _closest(value, [str(o) for o in self.options])
            raise Invalid(f"expected {self.describe()}, {_got(value)}{hint}")
        return value

    def describe(self) -> str:
        return "one of: " + ", ".join(str(o) for o in self.options)


@dataclass(frozen=True)
class FsPath(Type):
    """A local path, resolved against the config file's folder; ``exists`` checks it is there."""

    exists: bool = True
    kind: str = "any"  # "file", "dir" or "any"

    def check(self, value: Any, ctx: Context) -> Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise Invalid(f"expected a path, {_got(value)}")
        path = Path(os.path.expanduser(str(value)))
        if not path.is_absolute():
            path = ctx.base_dir / path
        path = Path(os.path.normpath(path))
        if self.exists:
            what = {"file": "file", "dir": "folder"}.get(self.kind, "file or folder")
            if not path.exists():
                raise Invalid(f"no such {what}: {path}")
            if self.kind == "dir" and not path.is_dir():
                raise Invalid(f"{path} is not a folder")
            if self.kind == "file" and not path.is_file():
                raise Invalid(f"{path} is not a file")
        return path

    def describe(self) -> str:
        what = {"file": "file", "dir": "folder"}.get(self.kind, "file or folder")
        return f"path to a {what} (relative: to the config file)"


@dataclass(frozen=True)
class Urls(Type):
    """A URL or local path (webdataset brace patterns allowed), or a list of them unless
    ``single``. Local paths resolve against the config file; ``scheme://`` and ``pipe:`` URLs are
    kept as written. A string stays a string, a list a list."""

    single: bool = False

    def check(self, value: Any, ctx: Context) -> str | list[str]:
        if isinstance(value, str) and value:
            return self._resolve(value, ctx)
        if (
            self.single
            or not isinstance(value, list)
            or not value
            or not all(isinstance(u, str) and u for u in value)
        ):
            raise Invalid(f"expected {self.describe()}, {_got(value)}")
        return [self._resolve(u, ctx) for u in value]

    @staticmethod
    def _resolve(url: str, ctx: Context) -> str:
        if "://" in url or url.startswith("pipe:") or os.path.isabs(url):
            return url
        return os.path.normpath(ctx.base_dir / os.path.expanduser(url))

    def describe(self) -> str:
        what = "a URL or path" if self.single else "a URL / path pattern or a list of them"
        return what + " (local paths: relative to the config file)"


@dataclass(frozen=True)
class ListOf(Type):
    item: Type

    def check(self, value: Any, ctx: Context) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(f"expected {self.describe()}, {_got(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item.check(v, ctx))
            except Invalid as exc:
                raise Invalid(f"item {i}: {exc.reason}") from None
        return out

    def describe(self) -> str:
        return f"a list of {self.item.plural()}"


@dataclass(frozen=True)
class MapOf(Type):
    value: Type
    takes_mapping = True

    def check(self, value: Any, ctx: Context) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise Invalid(f"expected a mapping of name -> {self.value.describe()}, {_got(value)}")
        out = {}
        for k, v in value.items():
            try:
                out[k] = self.value.check(v, ctx)
            except Invalid as exc:
                raise Invalid(f"{_shown(k)}: {exc.reason}") from None
        return out

    def describe(self) -> str:
        return f"a mapping of name -> ({self.value.describe()})"


class AnyMap(Type):
    """Keyword arguments passed through to a constructor, checked there against its signature."""

    takes_mapping = True

    def check(self, value: Any, ctx: Context) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise Invalid(f"expected a mapping of keyword arguments, {_got(value)}")
        return dict(value)

    def describe(self) -> str:
        return "a mapping of keyword arguments"


@dataclass(frozen=True)
class Either(Type):
    """The first alternative that accepts the value; ``null`` when ``nullable``."""

    options: tuple[Type, ...]
    nullable: bool = False

    def check(self, value: Any, ctx: Context) -> Any:
        if value is None and self.nullable:
            return None
        reasons = []
        for option in self.options:
            try:
                return option.check(value, ctx)
            except Invalid as exc:
                reasons.append((option, exc.reason))
        # the alternative of the value's own shape (a mapping, or not) says best what is wrong
        same_shape = [
            reason
            for option, reason in reasons
            if option.takes_any_shape or option.takes_mapping == isinstance(value, dict)
        ]
        if len(same_shape) == 1:
            raise Invalid(same_shape[0])
        raise Invalid(f"expected {self.describe()}, {_got(value)}")

    def describe(self) -> str:
        text = " or ".join(o.describe() for o in self.options)
        return text + (" or null" if self.nullable else "")


class CodeRef(Type):
    """``"module:function"``: names importable code (imported only when custom code is allowed)."""

    def check(self, value: Any, ctx: Context) -> str:
        if not isinstance(value, str) or value.count(":") != 1:
            raise Invalid(f"expected 'module:function', {_got(value)}")
        module, name = value.split(":")
        if not all(part.isidentifier() for part in module.split(".")) or not all(
            part.isidentifier() for part in name.split(".")
        ):
            raise Invalid(f"expected 'module:function' of Python identifiers, got {_shown(value)}")
        return value

    def describe(self) -> str:
        return "'module:function' (needs allow_custom_code)"


def _closest(value: Any, options: Sequence[str]) -> str:
    match = closest(value, options) if isinstance(value, str) else None
    return f"; did you mean {match!r}?" if match else ""


def closest(value: str, options: Sequence[str]) -> str | None:
    """The option most like ``value`` (difflib), or ``None`` when nothing is close."""
    match = difflib.get_close_matches(value, list(options), n=1, cutoff=0.6)
    if match:
        return match[0]
    # ignoring case and underscores still beats nothing ("MaxTokens" for "max_tokens")
    squashed = {o.lower().replace("_", ""): o for o in options}
    match = difflib.get_close_matches(value.lower().replace("_", ""), list(squashed), n=1)
    return squashed[match[0]] if match else None


class LabelTable(Type):
    """A label map (:class:`hetload.data.LabelMap`): a mapping ``raw id: id`` of integers, or the
    path of a YAML file holding one (a ``semantic-kitti.yaml`` with its ``learning_map``).
    Checked here by building the map once, so a bad entry fails before anything runs."""

    takes_any_shape = True

    def check(self, value: Any, ctx: Context) -> Any:
        from hetload.data.label_map import LabelMap

        if isinstance(value, str) and value:
            value = FsPath(kind="file").check(value, ctx)
        elif not isinstance(value, dict):
            raise Invalid(f"expected {self.describe()}, {_got(value)}")
        try:
            LabelMap(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return value

    def describe(self) -> str:
        return "a mapping of integer raw id -> integer id, or the path of a YAML file holding one"
