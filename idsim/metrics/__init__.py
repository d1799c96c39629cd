"""Similarity metrics between representations (rows: stimuli, columns: units).

Each metric family is one module of this package defining a :class:`~idsim.metrics.base.Metric`
subclass (see :mod:`idsim.metrics.base`): ``cka``, ``rsa``, ``regression``. :func:`families`
finds them; :func:`build` makes one from its options.

The array functions (``linear_cka``, ``rsa``, ``neural_regression``...) are importable from here;
torch (the ridge engine) and pandas (identifiability tables) load on first use, so that reading the
metrics' options (the command line) imports neither.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any, Mapping

from ..errors import IdsimError

from .cka import cka_from_grams, cka_matrix, linear_cka, u_centre  # noqa: E402 (light: NumPy only)
from .regression import DEFAULT_ALPHAS, neural_regression
from .rsa import compare_rdms, rdm, rdm_from_gram, rsa, rsa_matrix  # binds `rsa` to the function, not the module

_NOT_FAMILIES = {"base"}  # modules of this package that are not metric families ("_" modules are skipped too)


@functools.lru_cache(maxsize=None)
def families() -> dict[str, type]:
    """kind -> Metric class, for every module of this package that defines one."""
    from .base import Metric

    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_FAMILIES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Metric) and obj is not Metric and obj.kind == info.name:
                found[obj.kind] = obj
    return found


def build(options: Any):
    """A metric from its options: an ``Options`` object, or a mapping with ``kind`` (and ``name``, options)."""
    from .. import schema

    if isinstance(options, Mapping) or hasattr(options, "keys"):
        from omegaconf import OmegaConf

        options = OmegaConf.to_object(schema.structured("metric", options))
        options.validate("metric")
    kinds = families()
    kind = getattr(options, "kind", None)
    if kind not in kinds:
        raise IdsimError(f"metric.kind={kind!r}; valid: {', '.join(sorted(kinds))}")
    return kinds[kind](options)


_LAZY = {  # torch and pandas load on first use
    "fit_predict_cv": "_ridge", "RegressionResult": "_ridge", "pearson_columns": "_ridge",
    "identifiability_index": "..identifiability", "identifiability": "..identifiability",
    "best_per_source": "..identifiability", "verdict": "..identifiability",
    "centred_gram": "..gram", "pattern_gram": "..gram",
}


def __getattr__(name: str):
    if name in _LAZY:
        where = _LAZY[name]
        module = importlib.import_module(where[1:] if where.startswith("..") else f".{where}",
                                         "idsim" if where.startswith("..") else __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["families", "build", "linear_cka", "cka_from_grams", "cka_matrix", "u_centre", "rsa", "rdm", "compare_rdms",
           "rsa_matrix", "rdm_from_gram", "neural_regression", "DEFAULT_ALPHAS", *_LAZY]
