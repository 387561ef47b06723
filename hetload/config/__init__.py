"""YAML-configured loaders: ``hetload.build_loader("configs/demo.yaml", overrides=[...])``.

- ``types.py``: value types of keys (ints with ranges, choices, paths, URLs, ``module:function``)
- ``schema.py``: every section and key with its type, default and meaning; :func:`reference`
- ``load.py``: YAML (safe loading only), dotted overrides, validation -> :class:`LoaderConfig`
- ``build.py``: :func:`build_loader`: dataset, transforms, sampler, collate, DataLoader, device
- ``construct.py``: importing and constructing what a config names, errors naming the key
- ``coverage.py``: where every constructor argument of the classes built comes from (a key,
  ``dataset.options``, the build itself, or Python only), checked against their signatures
- ``wrappers.py``: datasets wrapped around the configured one (fields, transforms, labels)
- ``loader.py``: the :class:`Loader` returned, and the per-stage clocks of ``timed=True``

A config has the sections ``dataset``, ``transforms``, ``sampler``, ``collate``, ``loader``,
``distributed`` and ``device``; only ``dataset`` is required. It never imports code unless the
caller passes ``allow_custom_code=True`` (CLI: ``--allow-custom-code``).
"""

from hetload.config.build import Loader, StageTimes, build_loader
from hetload.config.load import ConfigError, LoaderConfig, load_config, parse_override
from hetload.config.schema import SCHEMA, reference

__all__ = [
    "SCHEMA",
    "ConfigError",
    "Loader",
    "LoaderConfig",
    "StageTimes",
    "build_loader",
    "load_config",
    "parse_override",
    "reference",
]
