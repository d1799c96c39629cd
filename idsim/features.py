"""Feature extraction: batched forward passes with hooks that stream into per-layer reducers.

The hooks reduce each layer's output the moment the module returns it, so later in-place
operations cannot corrupt what was recorded, and nothing but one batch of one layer is ever
held whole. After the last batch, :func:`extract` turns the reducers into :class:`LayerData`:
the Gram matrices of the kept units' patterns (CKA, RSA), the projected features (source side of
regression) and the sampled units (target side of regression).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .datasets.base import ProbeSet
from .errors import IdsimError
from .featureset import FeatureSet, LayerData, Plan
from .gram import pattern_gram
from .models import Model
from .procs import run_folder
from .reduce import DEFAULT_RAM_BUDGET, SparseProjection, UnitStats, UnitStore, jl_dim, layer_rng, sample_units

DEFAULT_EXACT_BUDGET = 1024 * 2**20  # bytes of exact values per layer; wider layers are projected for Grams

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; otherwise ``cpu``, ``cuda``, ``cuda:1``..."""
    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise IdsimError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IdsimError(f"extraction.device={device} asked for but CUDA is not available here; use extraction.device=auto"
                         f" or extraction.device=cpu")
    return dev


class _Images(Dataset):
    def __init__(self, probe: ProbeSet, transform):
        self.probe, self.transform = probe, transform

    def __len__(self) -> int:
        return len(self.probe)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.probe.image(i))


class _StopForward(Exception):
    """Raised by the last hook of a batch: the rest of the network is not needed."""


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    raise IdsimError(f"layer output of type {type(out).__name__} holds no tensor; choose another layer")


def iter_batches(model: Model, probe: ProbeSet, batch_size: int, device: torch.device, num_workers: int = 0) -> Iterable:
    loader = DataLoader(_Images(probe, model.transform), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    start = 0
    for x in loader:
        yield slice(start, start + x.shape[0]), x.to(device, non_blocking=True)
        start += x.shape[0]


def extract(model: Model, probe: ProbeSet, plan: Plan = Plan(), layers: list[str] | None = None, batch_size: int = 32,
            device: str | torch.device = "auto", progress: bool = True, scratch: Path | str | None = None,
            ram_budget: int = DEFAULT_RAM_BUDGET, num_workers: int = 0, exact_budget: int | None = DEFAULT_EXACT_BUDGET,
            gram_dim: int | str = "auto") -> FeatureSet:
    """Run ``model`` over ``probe`` and reduce each layer's output as ``plan`` says.

    Layers whose sampled units would take more than ``exact_budget`` bytes (float32, all images)
    get their Gram matrix / RDM from a sparse random projection to ``gram_dim`` dimensions
    (``"auto"``: Johnson-Lindenstrauss bound at eps 0.1) instead of the exact values; below it the
    exact values are kept: in RAM while all layers together take at most ``ram_budget`` bytes,
    in memory-mapped files in ``scratch`` beyond (their pages are released as they are written).
    ``exact_budget=None`` keeps every layer exact.
    """
    layers = model.resolve_layers(layers)
    n = len(probe)
    if n < 3:
        raise IdsimError(f"probe set has {n} images; at least 3 are needed to compare representations")
    if batch_size < 1:
        raise IdsimError(f"batch_size must be a positive integer, got {batch_size}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    net = model.module.to(dev)
    modules = dict(net.named_modules())
    reducers: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    calls: dict[str, int] = {}
    state = {"stop_after_all": False, "fired": set()}

    with contextlib.ExitStack() as stack:
        # spilled values live in this process's scratch folder (idsim.procs: swept if the process is SIGKILLed)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="extract-", dir=run_folder(scratch))))

        ram_left = [ram_budget]  # exact values kept in RAM, over all layers; the rest is spilled to scratch

        def store(units: np.ndarray, name: str, width: int) -> UnitStore:
            st = UnitStore(n, units, scratch=tmp, ram_budget=ram_left[0], name=name, n_features=width)
            if st.path is None:
                ram_left[0] -= st.data.nbytes
            return st

        def make(layer: str, p: int) -> dict:
            red = {}
            sampled = sample_units(p, plan.unit_ratio, plan.seed, layer)
            exact = exact_budget is None or n * sampled.size * 4 <= exact_budget
            if plan.grams and exact:  # exact values of the sampled units
                red["units"] = store(sampled, layer, p)
            elif plan.grams:  # too wide for the exact budget: Grams from a sparse random projection
                q = jl_dim(n) if gram_dim == "auto" else int(gram_dim)
                if {"column", "raw"} & set(plan.grams):
                    red["gram_proj"] = SparseProjection(n, p, q, plan.seed, layer, units=sampled, purpose="gram")
                if "row" in plan.grams:
                    red["row_proj"] = SparseProjection(n, p, q, plan.seed, layer, units=sampled, row_centre=True,
                                                       purpose="gram")
                red["stats"] = UnitStats(sampled)
            if plan.units:  # target units for regression: a seeded candidate set in random order
                order = layer_rng(plan.seed, layer, "regression-units").permutation(sampled)
                if plan.max_units is not None:
                    order = order[:min(order.size, 4 * plan.max_units)]  # enough to replace constant units
                red["order"] = order
                if "units" not in red or order.size < sampled.size:
                    red["target_units"] = store(np.sort(order), layer + ".target", p)
                    if "units" not in red and "stats" not in red:
                        red["stats"] = UnitStats(sampled)
            if plan.features:  # regression features: projected if wider than the projection
                q = p if plan.project is None else jl_dim(n) if plan.project == "auto" else int(plan.project)
                red["features"] = SparseProjection(n, p, q, plan.seed, layer) if p > q else \
                    store(np.arange(p), layer + ".features", p)
            red["sampled"] = sampled
            return red

        def hook_for(layer: str):
            def hook(_module, _inputs, out):
                acts = _first_tensor(out).detach()
                acts = acts.reshape(acts.shape[0], -1)
                calls[layer] = calls.get(layer, 0) + 1
                if layer not in reducers:
                    sizes[layer] = acts.shape[1]
                    reducers[layer] = make(layer, acts.shape[1])
                elif acts.shape[1] != sizes[layer]:
                    raise IdsimError(f"{model.name} layer {layer!r} changed size between calls ({sizes[layer]} vs {acts.shape[1]})")
                for r in reducers[layer].values():
                    if hasattr(r, "update"):
                        r.update(acts, state["rows"])
                state["fired"].add(layer)
                if state["stop_after_all"] and len(state["fired"]) == len(layers):
                    raise _StopForward
            return hook

        for layer in layers:
            stack.enter_context(_removing(modules[layer].register_forward_hook(hook_for(layer))))
        bar = _progress(n, f"{model.name}", progress)
        with torch.inference_mode():
            for i, (rows, x) in enumerate(iter_batches(model, probe, batch_size, dev, num_workers)):
                state["rows"], state["fired"] = rows, set()
                try:
                    net(x)
                except _StopForward:
                    pass
                if i == 0:
                    _check_calls(model, layers, calls)
                    state["stop_after_all"] = True  # every layer runs once: skip what follows the last one
                bar.update(x.shape[0])
        bar.close()
        features = FeatureSet(model=model.name, n_images=n)
        for layer in layers:
            features.layers[layer] = _finalize(layer, sizes[layer], reducers.pop(layer), plan)
    if dev.type == "cuda":
        net.to("cpu")
        torch.cuda.empty_cache()
    return features


@contextlib.contextmanager
def _removing(handle):
    try:
        yield handle
    finally:
        handle.remove()


def _check_calls(model: Model, layers: list[str], calls: dict[str, int]) -> None:
    silent = [lay for lay in layers if calls.get(lay, 0) == 0]
    if silent:
        raise IdsimError(f"{model.name} layer(s) {', '.join(silent)} never ran in the forward pass (e.g. auxiliary heads);"
                         f" choose layers from `python -m idsim.models layers {model.name}`")
    multi = [f"{lay} ({calls[lay]}x)" for lay in layers if calls[lay] > 1]
    if multi:
        raise IdsimError(f"{model.name} layer(s) {', '.join(multi)} run more than once per forward pass (a shared module),"
                         f" so their output is ambiguous; choose the enclosing block or another module")


def _finalize(layer: str, p: int, red: dict, plan: Plan) -> LayerData:
    data = LayerData(name=layer, n_units=p, n_sampled=int(red["sampled"].size))
    try:
        feats = red.get("features")
        if feats is not None:
            data.features = np.array(feats.data)
            data.projected = isinstance(feats, SparseProjection)
        store: UnitStore | None = red.get("units")
        stats = store if store is not None else red.get("stats")
        if stats is None:
            return data
        constant = stats.constant()
        keep = np.flatnonzero(~constant) if plan.drop_constant else np.arange(constant.size)
        data.n_constant = int(constant.size - keep.size)
        if keep.size == 0:
            raise IdsimError(f"layer {layer!r}: all {constant.size} sampled units are constant over the probe images")
        if store is not None:
            mean = store.mean()
            columns = keep if keep.size < constant.size else None
            for kind in plan.grams:  # constant units add exactly 0 to the column-centred Gram
                data.grams[kind] = pattern_gram(store.data, kind, mean=mean if kind == "column" else None,
                                                columns=None if kind == "column" else columns)
        elif plan.grams:
            data.approximate = True
            for kind in plan.grams:  # centring commutes with the (linear) projection
                proj = red["row_proj"] if kind == "row" else red["gram_proj"]
                data.grams[kind] = pattern_gram(proj.data, "column" if kind == "column" else "raw")
        if plan.units:
            src: UnitStore = red.get("target_units") or store
            order = red["order"]
            ok = ~constant[np.searchsorted(red["sampled"], order)] if plan.drop_constant else np.ones(order.size, bool)
            chosen = order[ok]
            if plan.max_units is not None:
                chosen = chosen[:plan.max_units]
            chosen = np.sort(chosen)
            data.units = np.asarray(src.data[:, np.searchsorted(src.units, chosen)], dtype=np.float32)
            data.unit_index = chosen
        return data
    finally:
        for r in red.values():
            if isinstance(r, UnitStore):
                r.close()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"extract {desc}", unit="img", disable=not enabled, leave=False, dynamic_ncols=True)
