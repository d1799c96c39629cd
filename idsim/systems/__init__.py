"""Targets and sources: built from their configs by one factory, whatever their kind.

Kinds (one module each): ``network`` (any torchvision or timm model; as the target, optionally
seen through a simulated recording), ``recording`` (a netCDF recording or Allen NWB files, as the
target), ``baseline`` (hand-made features as sources: Gabor, GIST, random Fourier features, pixels). Each kind module declares
``config_class(name, role)`` (the config dataclass of a name it serves, or None) and
``build(config, label, role, run)`` (a :class:`~idsim.systems.base.System`). Hydra's config source
(``hydra_plugins/idsim_source``) asks :func:`config_class` for ``target=<name>`` and
``sources=[<name>,...]``, so a new kind is one module here plus its entry in :data:`KINDS`.
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import SOURCE, TARGET, System

#: kind -> module (imported on first use); the first kind that serves a name wins
KINDS: dict[str, str] = {"network": ".network", "recording": ".recording", "baseline": ".baseline"}


def _module(kind: str):
    return importlib.import_module(KINDS[kind], __name__)


def config_class(name: str, role: str) -> type | None:
    """The config dataclass of the system called ``name`` in ``role`` (target or source), or None."""
    for kind in KINDS:
        cls = _module(kind).config_class(name, role)
        if cls is not None:
            return cls
    return None


def build(config: Any, label: str, role: str, run: Any) -> System:
    """The system a (validated) config describes."""
    kind = getattr(config, "kind", None)
    if kind not in KINDS:
        from ..errors import IdsimError

        raise IdsimError(f"{label}: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    return _module(kind).build(config, label, role, run)


def build_all(run: Any) -> tuple[System, list[System]]:
    """The target and the sources of a validated :class:`~idsim.schema.RunConfig`."""
    target = build(run.target, run.target.name, TARGET, run)
    sources = [build(cfg, label, SOURCE, run) for label, cfg in run.sources.items()]
    return target, sources


def probe_set(target: System, run: Any):
    """The probe images of a run: the target's own (a recording's stimuli), else the run's ``dataset``."""
    own = target.stimuli()
    if own is not None:
        import logging

        logging.getLogger("idsim").info("probe set: the %d stimuli of %s (dataset=%s is not used)", len(own),
                                        target.label, run.dataset.name)
        return own
    return run.dataset.build()


__all__ = ["System", "probe_set", "TARGET", "SOURCE", "KINDS", "config_class", "build", "build_all"]
