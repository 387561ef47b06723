"""Read, override and validate a loader config before anything runs.

Every problem is a :class:`ConfigError` (a ``ValueError``) whose message starts with the file and
the key: ``configs/demo.yaml: sampler.max_tokens: expected an integer >= 1, got -5``. Unknown keys
list the valid ones and suggest the closest.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hetload.config.schema import REQUIRED, SCHEMA, Key
from hetload.config.types import CodeRef, Context, Invalid, closest
from hetload.guards import NotRegularFile, read_regular, shown

__all__ = ["ConfigError", "LoaderConfig", "load_config", "parse_override"]

SECTIONS = (*SCHEMA, "transforms")


class ConfigError(ValueError):
    """A config that cannot be used: the message names the file, the key and the reason."""


@dataclass(frozen=True)
class LoaderConfig:
    """A validated config: every section filled with defaults, paths absolute.

    ``transforms`` is a list of ``(name, kwargs)``; a name with a ``:`` is custom code
    (``module:function``), present only when custom code was allowed.
    """

    source: str
    base_dir: Path
    dataset: dict[str, Any]
    transforms: list[tuple[str, dict[str, Any]]]
    sampler: dict[str, Any]
    collate: dict[str, Any]
    loader: dict[str, Any]
    distributed: dict[str, Any]
    device: dict[str, Any]
    allow_custom_code: bool = False
    overrides: tuple[str, ...] = field(default=())
    #: ``"section.key"`` of every key the config (or an override) set, defaults excluded
    given: frozenset[str] = frozenset()

    def error(self, key: str, reason: str) -> ConfigError:
        """A :class:`ConfigError` about ``key`` of this config (for checks made while building)."""
        return ConfigError(f"{self.source}: {key}: {reason}")

    def as_dict(self, *, given_only: bool = False) -> dict[str, Any]:
        """Plain data (paths as strings), e.g. to log the config a run used; ``given_only``
        leaves out the keys that hold their defaults."""

        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        out = {
            name: {
                key: plain(value)
                for key, value in getattr(self, name).items()
                if not given_only or f"{name}.{key}" in self.given
            }
            for name in SCHEMA
        }
        out["transforms"] = [{name: plain(kwargs)} for name, kwargs in self.transforms]
        return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice (plain safe_load keeps the last one
    silently, so a typo'd duplicate would hide the value the user meant)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    try:
        text = read_regular(path).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except NotRegularFile as exc:
        raise ConfigError(f"{path}: is {exc.kind}, expected a YAML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"sampler.max_tokens=200000"`` -> ``(["sampler", "max_tokens"], 200000)``; the value is
    parsed as YAML (``true``, ``null``, ``[a, b]``, ``1e5`` typed as YAML types them)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"override {shown(text)}: expected KEY=VALUE, e.g. sampler.max_tokens=200000"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown(text)}: the value is not valid YAML ({exc})") from None
    return [part.strip() for part in key.split(".")], value


def _unknown(source: str, where: str, name: str, valid: Sequence[str]) -> ConfigError:
    guess = closest(name, valid)
    hint = f"; did you mean {guess!r}?" if guess else ""
    path = f"{where}.{name}" if where else name
    return ConfigError(
        f"{source}: unknown key {shown(path)}{hint} Valid keys{' in ' + where if where else ''}: "
        + ", ".join(valid)
    )


def _apply_override(raw: dict, text: str, source: str) -> tuple[str, ...]:
    path, value = parse_override(text)
    label = f"{source} (override {shown(text)})"
    section = path[0]
    if section not in SECTIONS:
        raise _unknown(label, "", section, SECTIONS)
    if section == "transforms":
        return _override_transform(raw, path, value, label)
    if len(path) == 1:
        raw[section] = value
        return (section,)
    if len(path) != 2:
        raise ConfigError(f"{label}: {'.'.join(path)} is deeper than section.key")
    if path[1] not in SCHEMA[section]:
        raise _unknown(label, section, path[1], list(SCHEMA[section]))
    target = raw.get(section)
    if target is None:
        target = raw[section] = {}
    if not isinstance(target, dict):
        raise ConfigError(f"{label}: {section} is not a mapping in the config")
    target[path[1]] = value
    return tuple(path)


def _override_transform(raw: dict, path: list[str], value: Any, label: str) -> tuple[str, ...]:
    """``transforms=[...]`` replaces the list; ``transforms.<i>.<arg>=v`` sets one argument."""
    if len(path) == 1:
        raw["transforms"] = value
        return ("transforms",)
    entries = raw.get("transforms") or []
    if len(path) != 3 or not path[1].isdigit() or int(path[1]) >= len(entries):
        raise ConfigError(
            f"{label}: expected transforms.<i>.<argument> with i < {len(entries)}, "
            f"got {'.'.join(path)}"
        )
    i = int(path[1])
    entry = entries[i]
    if isinstance(entry, str):
        entries[i] = entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(f"{label}: transforms[{i}] is not a 'Name' or '{{Name: {{...}}}}' entry")
    ((name, kwargs),) = entry.items()
    if kwargs is None:
        entry[name] = kwargs = {}
    kwargs[path[2]] = value
    return tuple(path)


def _check_section(
    source: str,
    section: str,
    raw: Any,
    ctx: Context,
    cwd_ctx: Context,
    overridden: set[tuple[str, ...]],
) -> dict[str, Any]:
    keys: dict[str, Key] = SCHEMA[section]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {section}: expected a mapping of keys, got {shown(raw)}")
    for name in raw:
        if not isinstance(name, str) or name not in keys:
            raise _unknown(source, section, str(name), list(keys))
    selector = raw.get("type", keys["type"].default) if "type" in keys else None
    out: dict[str, Any] = {}
    for name, key in keys.items():
        where = f"{section}.{name}"
        if name not in raw or (raw[name] is None and key.default is REQUIRED):
            if key.default is REQUIRED:
                raise ConfigError(f"{source}: {where}: required ({key.type.describe()})")
            if selector in key.required_for:
                raise ConfigError(
                    f"{source}: {where}: required when {section}.type is {selector} "
                    f"({key.type.describe()})"
                )
            out[name] = copy.deepcopy(key.default)
            continue
        if key.only and selector not in key.only:
            raise ConfigError(
                f"{source}: {where}: applies to {section}.type "
                f"{' / '.join(key.only)}, not {selector}; remove it"
            )
        try:
            base = cwd_ctx if (section, name) in overridden or (section,) in overridden else ctx
            out[name] = key.type.check(raw[name], base)
        except Invalid as exc:
            raise ConfigError(f"{source}: {where}: {exc.reason}") from None
    return out


def _check_transforms(
    source: str, raw: Any, allow_custom_code: bool
) -> list[tuple[str, dict[str, Any]]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(
            f"{source}: transforms: expected a list of 'Name' or {{Name: {{arg: value}}}}, "
            f"got {shown(raw)}"
        )
    out = []
    for i, entry in enumerate(raw):
        where = f"{source}: transforms[{i}]"
        if isinstance(entry, str):
            name, kwargs = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            ((name, kwargs),) = entry.items()
            kwargs = {} if kwargs is None else kwargs
            if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
                raise ConfigError(
                    f"{where}: the arguments of {shown(name)} must be a mapping, "
                    f"got {shown(kwargs)}"
                )
        else:
            raise ConfigError(
                f"{where}: expected 'Name' or {{Name: {{arg: value}}}}, got {shown(entry)}"
            )
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: a transform name must be a string, got {shown(name)}")
        if ":" in name:
            _check_code(where, name, allow_custom_code)
        else:
            _check_transform(where, name, kwargs)
        out.append((name, dict(kwargs)))
    return out


def _check_transform(where: str, name: str, kwargs: dict[str, Any]) -> None:
    """The name is a hetload transform and it accepts ``kwargs`` (built once to check values)."""
    import inspect

    from hetload import transforms

    known = {
        n: obj
        for n in dir(transforms)
        if isinstance(obj := getattr(transforms, n), type)
        and issubclass(obj, transforms.Transform)
        and obj not in (transforms.Transform, transforms.Compose)
    }
    if name not in known:
        guess = closest(name, list(known))
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ConfigError(
            f"{where}: unknown transform {shown(name)}{hint} Known: {', '.join(sorted(known))}"
        )
    params = inspect.signature(known[name]).parameters
    for arg in kwargs:
        if arg not in params:
            guess = closest(arg, list(params))
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ConfigError(
                f"{where}: {name} has no argument {shown(arg)}{hint} Valid: {', '.join(params)}"
            )
    try:
        known[name](**kwargs)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from None


def _check_code(where: str, ref: str, allow_custom_code: bool) -> None:
    try:
        CodeRef().check(ref, Context(Path.cwd()))
    except Invalid as exc:
        raise ConfigError(f"{where}: {exc.reason}") from None
    if not allow_custom_code:
        raise ConfigError(
            f"{where}: {shown(ref)} would import and run code named by the config; allow it "
            "explicitly with build_loader(..., allow_custom_code=True) or --allow-custom-code"
        )


def load_config(
    config: str | os.PathLike | Mapping[str, Any] | LoaderConfig,
    overrides: Sequence[str] = (),
    *,
    allow_custom_code: bool = False,
    base_dir: str | os.PathLike | None = None,
) -> LoaderConfig:
    """Read and validate a config.

    Args:
        config: a YAML file path, a dict of the same shape, or an already validated config.
        overrides: ``"section.key=value"`` strings applied before validation; values typed as
            YAML; relative paths in them resolve against the current directory.
        allow_custom_code: permit ``module:function`` names (transforms, ``sampler.cost``).
        base_dir: where relative paths of a dict config start (default: the current directory);
            a file's paths always start at the file's folder.

    Raises:
        ConfigError: naming the file and the key, for YAML errors, unknown keys (with the valid
            keys and the closest one), wrong types or ranges, missing paths, custom code that
            was not allowed.
    """
    if isinstance(config, LoaderConfig):
        if not overrides and (allow_custom_code or not config.allow_custom_code):
            return config
        config, base_dir = config.as_dict(given_only=True), config.base_dir
    if isinstance(config, Mapping):
        source = "<config dict>"
        raw = copy.deepcopy(dict(config))
        root = Path(base_dir) if base_dir is not None else Path.cwd()
    elif isinstance(config, (str, os.PathLike)):
        path = Path(config)
        source = str(path)
        raw = _read_yaml(path)
        root = path.resolve().parent
        if raw is None:
            raise ConfigError(f"{source}: the config is empty")
    else:
        raise TypeError(f"a config is a YAML path or a dict, got {type(config).__name__}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top, got {shown(raw)}")
    for name in raw:
        if name not in SECTIONS:
            raise _unknown(source, "", str(name), SECTIONS)
    overridden: set[tuple[str, ...]] = set()
    for text in overrides:
        overridden.add(_apply_override(raw, text, source)[:2])
    if "dataset" not in raw:
        raise ConfigError(f"{source}: dataset: required (the section saying where samples are)")
    ctx, cwd_ctx = Context(root), Context(Path.cwd())
    given = frozenset(
        f"{name}.{key}" for name in SCHEMA if isinstance(raw.get(name), dict) for key in raw[name]
    )
    sections = {
        name: _check_section(source, name, raw.get(name), ctx, cwd_ctx, overridden)
        for name in SCHEMA
    }
    _check_labels(source, sections["dataset"])
    cost = sections["sampler"]["cost"]
    if cost not in ("padded", "sum"):
        _check_code(f"{source}: sampler.cost", cost, allow_custom_code)
    _check_schema(source, sections["collate"]["schema"])
    _check_device(source, sections["device"]["type"])
    return LoaderConfig(
        source=source,
        base_dir=root,
        transforms=_check_transforms(source, raw.get("transforms"), allow_custom_code),
        allow_custom_code=allow_custom_code,
        overrides=tuple(overrides),
        given=given,
        **sections,
    )


def _check_labels(source: str, dataset: dict[str, Any]) -> None:
    """``dataset.labels`` means a class per folder for MeshFolder, whether to read the per-point
    label files for SemanticKITTI: each type takes only its own kind of value."""
    labels, kind = dataset["labels"], dataset["type"]
    if labels is None:
        return
    if kind == "MeshFolder" and labels != "folder":
        raise ConfigError(
            f"{source}: dataset.labels: MeshFolder takes labels: folder (or null), got "
            f"{shown(labels)}"
        )
    if kind == "SemanticKITTI" and not isinstance(labels, bool):
        raise ConfigError(
            f"{source}: dataset.labels: SemanticKITTI takes true, false or null (whether its "
            f".label files are required, skipped or read where present), got {shown(labels)}"
        )


def _check_schema(source: str, fields: dict[str, str]) -> None:
    from hetload.schema import Field

    for name, spec in fields.items():
        try:
            Field.parse(spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: collate.schema.{name}: {exc}") from None


def _check_device(source: str, device: str) -> None:
    import torch

    if device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"{source}: device.type: {shown(device)} is not a torch device ({exc})"
        ) from None
