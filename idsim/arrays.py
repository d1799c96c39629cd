"""In-memory responses (a recording's regions, a baseline's features) through the same reducers as networks.

A network's layers are reduced batch by batch inside forward hooks (:func:`idsim.features.extract`).
Responses that are already arrays -- a recording's trial-averaged responses per region, the
features of a hand-made baseline -- go through the very same per-layer reducers
(:func:`idsim.features.layer_reducers`) and the same finalisation, batch by batch, so a region or
a baseline layer gets exactly the Gram matrices, projections, unit samples and zero-variance
counts that a network layer with those values would get.

- :func:`reduce_batches`: batches of rows (``{layer: (b, ...) array}``, in image order) as they
  are computed, e.g. a baseline's features image batch by image batch;
- :func:`reduce_arrays`: whole arrays (``{layer: (n, ...) array}``).
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from .errors import IdsimError
from .featureset import FeatureSet, Plan
from .reduce import DEFAULT_RAM_BUDGET, UnitStore

DEFAULT_BATCH = 256


def reduce_batches(batches: Iterable[Mapping[str, np.ndarray]], n: int, layers: Sequence[str], plan: Plan = Plan(),
                   name: str = "arrays", device: str | torch.device = "cpu", scratch: Path | str | None = None,
                   ram_budget: int = DEFAULT_RAM_BUDGET, exact_budget: int | None = None,
                   gram_dim: int | str = "auto") -> FeatureSet:
    """Reduce ``n`` rows of every layer, given as consecutive batches ``{layer: (b, ...) array}``, as ``plan`` says.

    Each layer's values are flattened per row (as a network layer's output). ``exact_budget``,
    ``gram_dim``, ``ram_budget`` and ``scratch`` mean what they mean for
    :func:`idsim.features.extract` (default here: every layer exact).
    """
    from .features import DEFAULT_EXACT_BUDGET, _finalize, layer_reducers  # noqa: F401 - one implementation

    layers = list(layers)
    if n < 3:
        raise IdsimError(f"{name}: {n} stimuli; at least 3 are needed to compare representations")
    if len(set(layers)) != len(layers):
        raise IdsimError(f"{name}: a layer is named twice in {layers}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    reducers: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    start = 0
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idsim-", dir=scratch)))
        ram_left = [ram_budget]

        def store(units: np.ndarray, layer: str, width: int) -> UnitStore:
            st = UnitStore(n, units, scratch=tmp, ram_budget=ram_left[0], name=layer, n_features=width)
            if not st.spilled:
                ram_left[0] -= st.data.nbytes
            return st

        try:
            for batch in batches:
                missing = [lay for lay in layers if lay not in batch]
                if missing:
                    raise IdsimError(f"{name}: a batch lacks layer(s) {', '.join(missing)}")
                b = None
                for layer in layers:
                    acts = torch.as_tensor(np.asarray(batch[layer], dtype=np.float32)).to(dev)
                    acts = acts.reshape(acts.shape[0], -1)
                    if b is None:
                        b = acts.shape[0]
                    elif acts.shape[0] != b:
                        raise IdsimError(f"{name}: layers of one batch have different numbers of rows ({b} vs"
                                         f" {acts.shape[0]} for {layer!r})")
                    if start + b > n:
                        raise IdsimError(f"{name}: more than the {n} expected rows")
                    if layer not in reducers:
                        sizes[layer] = acts.shape[1]
                        reducers[layer] = layer_reducers(layer, acts.shape[1], n, plan, store, exact_budget, gram_dim,
                                                         tag=name)
                    elif acts.shape[1] != sizes[layer]:
                        raise IdsimError(f"{name}: layer {layer!r} changed width between batches ({sizes[layer]} vs"
                                         f" {acts.shape[1]})")
                    rows = slice(start, start + b)
                    for r in reducers[layer].values():
                        if hasattr(r, "update"):
                            r.update(acts, rows)
                start += b or 0
            if start != n:
                raise IdsimError(f"{name}: got {start} rows, expected {n}")
            features = FeatureSet(model=name, n_images=n)
            for layer in layers:
                features.layers[layer] = _finalize(layer, sizes[layer], reducers.pop(layer), plan)
        finally:
            for red in reducers.values():  # an error half-way: close what was opened
                for r in red.values():
                    if isinstance(r, UnitStore):
                        r.close()
    return features


def reduce_arrays(arrays: Mapping[str, np.ndarray], plan: Plan = Plan(), name: str = "arrays",
                  batch_size: int = DEFAULT_BATCH, **kwargs) -> FeatureSet:
    """Reduce whole arrays ``{layer: (n, ...)}`` (one row per stimulus) as ``plan`` says; see :func:`reduce_batches`."""
    layers = list(arrays)
    if not layers:
        raise IdsimError(f"{name}: no layers to reduce")
    ns = {lay: int(np.shape(arrays[lay])[0]) for lay in layers}
    n = ns[layers[0]]
    if len(set(ns.values())) != 1:
        raise IdsimError(f"{name}: layers have different numbers of stimuli: {ns}")

    def batches():
        for s in range(0, n, batch_size):
            yield {lay: arrays[lay][s:s + batch_size] for lay in layers}

    return reduce_batches(batches(), n, layers, plan, name=name, **kwargs)


__all__ = ["reduce_arrays", "reduce_batches"]
