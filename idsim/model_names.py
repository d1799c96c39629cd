"""Which model names exist, answered without importing torch, torchvision or timm.

Listing the libraries' models means importing them (seconds). idsim ships the lists of the library
versions it was released with (``data/model_names.json``); when an installed version differs, the
list is computed once by importing that library and remembered on disk per version
(``<cache dir>/model_names/<library>-<version>.json``). Checking a name on the command line
therefore costs a JSON read.
"""
from __future__ import annotations

import difflib
import functools
import importlib.metadata
import json
import os
from pathlib import Path

from .errors import IdsimError

LIBRARIES = ("torchvision", "timm")
_SHIPPED = Path(__file__).resolve().parent / "data" / "model_names.json"


def cache_root() -> Path:
    """idsim's cache folder: ``$IDSIM_CACHE_DIR`` or ``~/.cache/idsim`` (the default of ``cache.dir``)."""
    return Path(os.environ.get("IDSIM_CACHE_DIR") or Path.home() / ".cache" / "idsim").expanduser()


def remember(path: Path, text: str) -> None:
    """Write a small remembered answer under the cache folder atomically; best effort (unwritable: recomputed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass


def _compute(library: str) -> list[str]:
    if library == "torchvision":
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)
    import timm

    return timm.list_models()


@functools.lru_cache(maxsize=None)
def names(library: str) -> tuple[str, ...]:
    """Sorted model names of ``library`` (``torchvision``: classification models; ``timm``: all)."""
    try:
        version = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return ()
    try:
        shipped = json.loads(_SHIPPED.read_text())[library]
        if shipped["version"] == version:
            return tuple(shipped["names"])
    except (OSError, ValueError, KeyError):
        pass
    path = cache_root() / "model_names" / f"{library}-{version}.json"
    try:
        return tuple(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    found = tuple(sorted(_compute(library)))
    remember(path, json.dumps(found))
    return found


def torchvision_models() -> tuple[str, ...]:
    return names("torchvision")


def timm_models() -> tuple[str, ...]:
    return names("timm")


@functools.lru_cache(maxsize=None)
def _all() -> frozenset[str]:
    return frozenset(torchvision_models()) | frozenset(timm_models())


def all_model_names() -> list[str]:
    """Every model name idsim can build (torchvision's classification models and timm's)."""
    return sorted(_all())


def is_model(name: str) -> bool:
    return name in _all()


def resolve_library(name: str, library: str = "auto") -> str:
    """Which library builds ``name``: torchvision first (as the papers used it), then timm."""
    if library not in ("auto", *LIBRARIES):
        raise IdsimError(f"unknown model library {library!r}; valid: auto, torchvision, timm")
    if library in ("auto", "torchvision") and name in torchvision_models():
        return "torchvision"
    if library in ("auto", "timm") and name in timm_models():
        return "timm"
    other = {"torchvision": timm_models(), "timm": torchvision_models()}.get(library, ())
    if name in other:
        owner = "timm" if library == "torchvision" else "torchvision"
        raise IdsimError(f"{name!r} is not a {library} classification model but a {owner} one;"
                         f" use library=auto or library={owner}")
    where = "torchvision or timm" if library == "auto" else library
    raise IdsimError(f"unknown model {name!r}: not a {where} classification model{did_you_mean(name)}")


def did_you_mean(name: str, choices=None) -> str:
    """A hint naming the closest valid names (and how to list all models when no list is given)."""
    pool = all_model_names() if choices is None else list(choices)
    close = difflib.get_close_matches(str(name), pool, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if choices is None:
        hint += " (list them all: python -m idsim.models list)"
    return hint
