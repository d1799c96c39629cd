"""Probe image sets, chosen with ``dataset=<name>``.

Each probe set is one module of this package declaring an options dataclass (a subclass of
:class:`~idsim.schema.ProbeSetOptions`: its fields are the set's ``dataset.<key>`` options, with
their defaults and checks) whose ``build()`` returns a :class:`ProbeSet`, plus one YAML file
``conf/dataset/<name>.yaml`` that extends ``base_<name>``. :func:`registry` finds the options
classes, so adding a probe set takes nothing else.

``load_probe_set({"name": "shapes", "n_images": 100, "seed": 0})`` returns a :class:`ProbeSet`, as does
``load_probe_set(ShapesOptions(n_images=100))`` (:mod:`idsim.datasets.shapes`) or the ``dataset`` node
of a composed config. ``n_images`` caps any set (the first N images, which never depend on N).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from typing import Any, Callable, Mapping, Sequence

from ..errors import IdsimError
from .base import ProbeSet

#: modules of this package that declare no probe set
_NOT_PROBE_SETS = {"base", "__main__"}


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, type]:
    """name -> options class of every probe set (one per ``ProbeSetOptions`` subclass with a ``name``).

    Every module of this package but ``base`` and ``__main__`` is imported (they import only
    numpy and Pillow at module level: heavy libraries load when a set is built).
    """
    from ..schema import ProbeSetOptions

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_PROBE_SETS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if not (isinstance(obj, type) and issubclass(obj, ProbeSetOptions) and obj.__module__ == module.__name__):
                continue
            name = _name(obj)
            if name is None:  # a shared base of several sets' options
                continue
            if name in found:
                raise TypeError(f"probe set {name!r} is declared twice: {found[name].__qualname__} and"
                                f" {obj.__qualname__}")
            found[name] = obj
    return dict(sorted(found.items()))


def _name(cls: type) -> str | None:
    """The default of ``cls.name``, or None where it has none (``MISSING``)."""
    from omegaconf import MISSING

    field = next(f for f in dataclasses.fields(cls) if f.name == "name")
    return field.default if isinstance(field.default, str) and field.default != MISSING else None


def distinct_names(valid: Sequence[str]) -> Callable[[Any], bool]:
    """A check for options such as ``photos``: a non-empty list of distinct names from ``valid``."""
    def check(v: Any) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) and x in valid for x in v)
                and len(set(v)) == len(v))
    return check


def cache_dir(*parts: str) -> str:
    """idsim's cache folder (``$IDSIM_CACHE_DIR`` or ``~/.cache/idsim``, the default of ``cache.dir``) or a
    folder in it: the concrete default of options whose YAML follows the run's ``cache.dir``."""
    from ..model_names import cache_root  # on first use: it imports importlib.metadata (~30 ms)

    return str(cache_root().joinpath(*parts))


class Capped(ProbeSet):
    """The first ``n`` images of another probe set."""

    def __init__(self, base: ProbeSet, n: int):
        self.base, self.n, self.name = base, n, base.name

    def __len__(self) -> int:
        return self.n

    def image(self, i: int):
        return self.base.image(i)

    def stimulus_id(self, i: int) -> str:
        return self.base.stimulus_id(i)

    def label(self, i: int):
        return self.base.label(i)

    def identity(self) -> dict[str, Any]:
        return {**self.base.identity(), "n_images": self.n}

    @property
    def unreadable(self) -> list[str]:
        return self.base.unreadable


def cap(probe: ProbeSet, n_images: int | None) -> ProbeSet:
    """Keep the first ``n_images`` images (None: all); asking for more than exist is an error that says
    how many do. ``n_images`` was checked with the options (a positive integer or None)."""
    if n_images is None or n_images == len(probe):
        return probe
    if n_images > len(probe):
        raise IdsimError(f"dataset.n_images={n_images} but {probe.name} has only {len(probe)} images;"
                         f" use dataset.n_images={len(probe)} or fewer")
    return Capped(probe, int(n_images))


def options(cfg: Any):
    """The validated options object of a dataset config: a mapping (plain or DictConfig) with ``name``
    and any options, or an options object (validated as it is)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

    from .. import schema

    if not isinstance(cfg, schema.ProbeSetOptions):
        if isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):  # numpy values as Python ones
            cfg = {k: _plain(v) for k, v in cfg.items()}
        node = schema.structured("dataset", cfg)
        try:
            cfg = OmegaConf.to_object(node)
        except InterpolationResolutionError as e:  # e.g. seed: ${seed} in a mapping given without its run
            if node is cfg:  # a node of a composed config: its interpolations had the run to refer to
                raise IdsimError(schema.describe_error(e, "dataset.")) from None
            key = str(e.full_key)
            raw = OmegaConf.to_container(node, resolve=False).get(key.split(".")[0].split("[")[0])
            raise IdsimError(f"dataset.{key}={raw} cannot be resolved ({str(e).splitlines()[0]}): a dataset config"
                             f" on its own has no run keys to refer to; give the value, or pass the composed"
                             f" config's dataset node") from None
        except OmegaConfBaseException as e:  # a missing value
            raise IdsimError(schema.describe_error(e, "dataset.")) from None
    cfg.validate("dataset")
    return cfg


def _plain(value: Any) -> Any:
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # scalars and arrays
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_probe_set(cfg: Any) -> ProbeSet:
    """Build the probe set a dataset config describes (see :func:`options`)."""
    return options(cfg).build()


__all__ = ["ProbeSet", "load_probe_set", "options", "registry", "cap", "cache_dir"]
