"""A network's layout, remembered on disk: its default layers and every module's name.

Checking a layer list needs nothing else of a network. The first call builds it on the meta
device (importing its library: seconds); the answer is remembered on disk, keyed by the library's
and torch's versions and by the bytes of idsim's own model and layer code, so a later run (a warm
sweep job) checks its layers from a JSON read, without importing torch, torchvision or timm.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """What checking a layer list needs of a network: its default layers and every module's name."""

    default_layers: tuple[str, ...]
    modules: frozenset[str]


def _layout_path(name: str, library: str) -> Path:
    """Where a network's :class:`Layout` is remembered: per library version and per idsim layer code."""
    from .cache import package_versions, source_digest
    from .model_names import cache_root

    code = source_digest(("layers.py", "models.py"))  # the code that builds networks and picks their default layers
    versions = "-".join(package_versions(("torch", library)).values())
    return cache_root() / "layouts" / f"{library}-{versions}-{code[:12]}" / f"{name}.json"


def layout(name: str, library: str) -> Layout | None:
    """A network's :class:`Layout`, or None if it cannot be built weightless (its layers are checked when built)."""
    from .model_names import remember

    path = _layout_path(name, library)
    try:
        d = json.loads(path.read_text())
        return Layout(tuple(d["default_layers"]), frozenset(d["modules"]))
    except (OSError, ValueError, KeyError):
        pass
    from .layers import default_layers
    from .models import meta_module

    module = meta_module(name, library)
    if module is None:
        return None
    found = Layout(tuple(default_layers(module, name, library)), frozenset(n for n, _ in module.named_modules() if n))
    remember(path, json.dumps({"default_layers": list(found.default_layers), "modules": sorted(found.modules)}))
    return found
