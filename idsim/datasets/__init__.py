"""Probe image sets, chosen with ``dataset=<name>``.

``load_probe_set({"name": "shapes", "n_images": 100, "seed": 0})`` returns a :class:`ProbeSet`.
``n_images`` caps any set (the first N images, which never depend on N).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import IdsimError
from .base import ProbeSet


#: name -> "module:function" of a builder taking the dataset config (minus ``name``) and
#: returning a ProbeSet. Builders pop the keys they understand; anything left over is reported as
#: unknown. Modules are imported only when their set is asked for (some need optional packages).
BUILDERS: dict[str, str] = {
    "shapes": "shapes:build",
    "synthetic_objects": "synthetic_objects:build",
    "hvm": "folders:build_hvm",
    "texture_noise": "texture_noise:build",
    "freeman_ziemba": "folders:build_freeman_ziemba",
    "natural": "natural:build",
    "folder": "folders:build_folder",
    "imagenet": "folders:build_imagenet",
    "allen_scenes": "allen:build",
}


def _builder(name: str) -> Callable[[dict], ProbeSet]:
    import importlib

    module, func = BUILDERS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


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


def cap(probe: ProbeSet, n_images: int | None) -> ProbeSet:
    """Keep the first ``n_images`` images; asking for more than exist is an error that says how many do."""
    if n_images is None or n_images == len(probe):
        return probe
    if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images < 1:
        raise IdsimError(f"dataset.n_images must be a positive integer or null (all images), got {n_images!r}")
    if n_images > len(probe):
        raise IdsimError(f"dataset.n_images={n_images} but {probe.name} has only {len(probe)} images;"
                         f" use dataset.n_images={len(probe)} or fewer")
    return Capped(probe, n_images)


def load_probe_set(cfg: Mapping[str, Any]) -> ProbeSet:
    """Build the probe set a dataset config describes."""
    params = dict(cfg)
    name = params.pop("name", None)
    if name not in BUILDERS:
        raise IdsimError(f"unknown dataset {name!r}; valid: {', '.join(sorted(BUILDERS))}")
    n_images = params.get("n_images")
    probe = _builder(name)(params)
    params.pop("n_images", None)
    if params:
        raise IdsimError(f"dataset {name}: unknown option(s) {', '.join(sorted(params))}")
    return cap(probe, n_images)


__all__ = ["ProbeSet", "load_probe_set", "cap", "BUILDERS"]
