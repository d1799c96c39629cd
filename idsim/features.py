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
import mmap
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .datasets.base import ProbeSet
from .devices import resolve_device
from .errors import IdsimError
from .featureset import FeatureSet, LayerData, Plan
from .gram import pattern_gram
from .models import Model
from .procs import reserve, run_folder
from .reduce import (DEFAULT_RAM_BUDGET, SparseProjection, UnitStats, UnitStore, jl_dim, layer_rng, sample_units,
                     to_numpy)

DEFAULT_EXACT_BUDGET = 1024 * 2**20  # bytes of exact values per layer; wider layers are projected for Grams

log = logging.getLogger(__name__)


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


class _Crops(Dataset):
    def __init__(self, probe: ProbeSet):
        from .models import shared_crop

        self.probe, self.crop = probe, shared_crop()

    def __len__(self) -> int:
        return len(self.probe)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.crop(self.probe.image(i))


def shared_pixels(probe: ProbeSet, num_workers: int = 0, scratch: Path | str | None = None) -> np.ndarray:
    """Every probe image's shared crop (``preprocess=shared``): (n, 3, 224, 224) uint8, decoded once per run.

    All models of a run see these same pixels, so each image is decoded, resized and cropped once
    (in ``num_workers`` worker processes), not once per model. The array is kept on the probe set
    object for the run's lifetime; beyond 256 MB it lives in a file in ``scratch`` (removed with it).
    """
    cached = getattr(probe, "_idsim_shared_pixels", None)
    if cached is not None and len(cached) == len(probe):
        return cached
    from .models import SHARED_SIZE

    n = len(probe)
    shape = (n, 3, SHARED_SIZE, SHARED_SIZE)
    if n * 3 * SHARED_SIZE * SHARED_SIZE > 256 * 2**20:
        import weakref

        fd, name = tempfile.mkstemp(prefix="idsim-pixels-", suffix=".u8", dir=scratch)
        os.close(fd)
        pixels = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
        weakref.finalize(pixels, _unlink, name)
        reserve(name, 0, os.path.getsize(name), f"the {n} probe images' decoded pixels")
    else:
        pixels = np.empty(shape, dtype=np.uint8)
    loader = DataLoader(_Crops(probe), batch_size=16, shuffle=False, num_workers=num_workers)
    start = 0
    for x in loader:
        pixels[start:start + x.shape[0]] = x.numpy()
        start += x.shape[0]
    try:
        probe._idsim_shared_pixels = pixels
    except AttributeError:  # a probe set that takes no attributes: decoded again next time
        pass
    return pixels


class Arena:
    """Memory reused by every extraction of a run for its exact values: RAM within ``ram_budget``,
    and one scratch file beyond it.

    Fresh memory costs a page fault per 4 KiB the first time it is written (measured here: 2-3 s per
    GB, as much as a small model's forward passes; on this VM freed memory goes back to the host, so
    memory a process frees and takes again is fresh again). So the stores of the run's later models
    reuse the RAM pages of the earlier ones, and their spilled values the pages of one scratch file
    that lives as long as the run (in the page cache: a new file per layer would be fresh pages every
    time, freed when it is removed). It lives on the run's probe set object (like its shared pixels)
    and goes with it.
    """

    def __init__(self):
        self.buffer = np.empty(0, dtype=np.uint8)
        self.offset = 0
        self.spill_path: Path | None = None
        self.spill_size = 0
        self.spill_offset = 0

    @classmethod
    def of(cls, probe) -> "Arena":
        arena = getattr(probe, "_idsim_arena", None)
        if arena is None:
            arena = cls()
            try:
                probe._idsim_arena = arena
            except AttributeError:
                pass
        arena.offset = arena.spill_offset = 0  # a new extraction: everything before is finalised and copied out
        return arena

    def take(self, nbytes: int, budget: int) -> np.ndarray | None:
        """``nbytes`` of reused RAM (64-byte aligned), or None beyond ``budget`` bytes in all."""
        start = -(-self.offset // 64) * 64
        if start + nbytes > budget:
            return None
        if start + nbytes > self.buffer.size:  # the whole budget at once: pages are faulted in only when written
            self.buffer = np.empty(budget, dtype=np.uint8)  # (stores still using the old buffer keep it alive)
        self.offset = start + nbytes
        return self.buffer[start:start + nbytes]

    def spill(self, nbytes: int, folder: Path) -> tuple[Path, int]:
        """Where ``nbytes`` of spilled values go: (the run's scratch file in ``folder``, a page-aligned offset)."""
        if self.spill_path is None or self.spill_path.parent != folder or not self.spill_path.exists():
            import weakref

            fd, name = tempfile.mkstemp(prefix="spill-", suffix=".f32", dir=folder)
            os.close(fd)
            self.spill_path, self.spill_size = Path(name), 0
            weakref.finalize(self, _unlink, name)
        start = -(-self.spill_offset // mmap.ALLOCATIONGRANULARITY) * mmap.ALLOCATIONGRANULARITY
        if start + nbytes > self.spill_size:  # grows (its blocks allocated: a full disk is an error, not a SIGBUS)
            reserve(self.spill_path, self.spill_size, start + nbytes - self.spill_size, "spilled layer values")
            self.spill_size = start + nbytes  # never shrinks during the run
        self.spill_offset = start + nbytes
        return self.spill_path, start


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def iter_batches(model: Model, probe: ProbeSet, batch_size: int, device: torch.device, num_workers: int = 0,
                 scratch: Path | str | None = None) -> Iterable:
    """(rows, input batch on ``device``) over the probe set, in order.

    ``preprocess=shared``: slices of the run's shared uint8 crops go to the device as they are
    (4x less to copy than floats) and become this model's input there (:meth:`Model.finish`).
    ``preprocess=model``: the library's transform in a DataLoader (``num_workers`` processes).
    """
    if getattr(model, "preprocess", "model") == "shared":
        pixels = shared_pixels(probe, num_workers, scratch)
        pin = device.type == "cuda"
        for start in range(0, len(pixels), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(pixels[start:start + batch_size]))
            x = x.pin_memory() if pin else x
            yield slice(start, start + x.shape[0]), model.finish(x.to(device, non_blocking=True))
        return
    loader = DataLoader(_Images(probe, model.transform), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    start = 0
    for x in loader:
        yield slice(start, start + x.shape[0]), x.to(device, non_blocking=True)
        start += x.shape[0]


def extract(model: Model, probe: ProbeSet, plan: Plan = Plan(), layers: list[str] | None = None, batch_size: int = 32,
            device: str | torch.device = "auto", progress: bool = True, scratch: Path | str | None = None,
            ram_budget: int = DEFAULT_RAM_BUDGET, num_workers: int = 0, exact_budget: int | None = DEFAULT_EXACT_BUDGET,
            gram_dim: int | str = "auto", precision: str = "float32") -> FeatureSet:
    """Run ``model`` over ``probe`` and reduce each layer's output as ``plan`` says.

    Layers whose sampled units would take more than ``exact_budget`` bytes (float32, all images)
    get their Gram matrix / RDM from a sparse random projection to ``gram_dim`` dimensions
    (``"auto"``: Johnson-Lindenstrauss bound at eps 0.1) instead of the exact values; below it the
    exact values are kept: in RAM while all layers together take at most ``ram_budget`` bytes,
    in memory-mapped files in ``scratch`` beyond (their pages are released as they are written).
    ``exact_budget=None`` keeps every layer exact. ``precision`` (``float16``/``bfloat16``) runs the
    forward passes in half precision; every reduction is still done in float32 or better.
    """
    layers = model.resolve_layers(layers)
    n = len(probe)
    if n < 3:
        raise IdsimError(f"probe set has {n} images; at least 3 are needed to compare representations")
    if batch_size < 1:
        raise IdsimError(f"batch_size must be a positive integer, got {batch_size}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[precision]
    net = model.module.to(dev, dtype)
    modules = dict(net.named_modules())
    reducers: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    calls: dict[str, int] = {}
    state = {"stop_after_all": False, "fired": set()}

    with contextlib.ExitStack() as stack:
        # spilled values live in this process's scratch folder (idsim.procs: swept if the process is SIGKILLed)
        folder = run_folder(scratch)

        ram_left = [ram_budget]  # exact values kept in RAM, over all layers; the rest is spilled to scratch
        # on a GPU, exact values stay there (half of its free memory at the start), so no batch goes to the host
        device_left = [torch.cuda.mem_get_info(dev)[0] // 2 if dev.type == "cuda" else 0]

        arena = Arena.of(probe)

        def store(units: np.ndarray, name: str, width: int) -> UnitStore:
            nbytes = n * units.size * 4
            buffer = spill_at = None
            if dev.type == "cpu":
                if nbytes <= ram_left[0]:
                    buffer = arena.take(nbytes, ram_budget)
                else:
                    spill_at = arena.spill(nbytes, folder)
            st = UnitStore(n, units, ram_budget=ram_left[0], name=name, n_features=width, device=dev,
                           device_budget=device_left[0], buffer=buffer, spill_at=spill_at)
            if isinstance(st.data, torch.Tensor):
                device_left[0] -= st.data.numel() * 4
            elif not st.spilled:
                ram_left[0] -= st.data.nbytes
            return st

        def hook_for(layer: str):
            def hook(_module, _inputs, out):
                acts = _first_tensor(out).detach()
                acts = acts.reshape(acts.shape[0], -1)
                calls[layer] = calls.get(layer, 0) + 1
                if layer not in reducers:
                    sizes[layer] = acts.shape[1]
                    reducers[layer] = layer_reducers(layer, acts.shape[1], n, plan, store, exact_budget, gram_dim,
                                                     tag=getattr(model, "identity", model.name))
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
            for i, (rows, x) in enumerate(iter_batches(model, probe, batch_size, dev, num_workers, scratch)):
                state["rows"], state["fired"] = rows, set()
                try:
                    net(x if dtype == torch.float32 else x.to(dtype))
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
    if dtype != torch.float32:
        net.to(torch.float32)
    if dev.type == "cuda":
        net.to("cpu")
        torch.cuda.empty_cache()
    return features


def gram_columns(n: int, n_sampled: int, exact_budget: int | None = DEFAULT_EXACT_BUDGET,
                 gram_dim: int | str = "auto") -> tuple[int, bool]:
    """(columns, exact): how many columns a layer's Gram matrix is formed from over ``n`` images, and
    whether they are its ``n_sampled`` exact units (float32 values within ``exact_budget`` bytes) or
    a sparse random projection of them to ``gram_dim`` dimensions (``"auto"``: :func:`jl_dim`)."""
    if exact_budget is None or n * n_sampled * 4 <= exact_budget:
        return n_sampled, True
    return (jl_dim(n) if gram_dim == "auto" else int(gram_dim)), False


def layer_reducers(layer: str, p: int, n: int, plan: Plan, store, exact_budget: int | None = DEFAULT_EXACT_BUDGET,
                   gram_dim: int | str = "auto", tag: str | None = None) -> dict:
    """The reducers that keep what ``plan`` needs of a layer of ``p`` units over ``n`` images.

    ``store(units, name, width)`` makes the :class:`UnitStore` of exact values (RAM or spilled).
    ``tag``: the system's identity, which seeds its random projections together with the layer name
    (so a target and a same-architecture source never share projection matrices).
    Shared by network extraction and :func:`idsim.arrays.reduce_arrays` (recordings, baselines),
    so a layer's numbers never depend on where its values came from.
    """
    red = {}
    tagged = f"{tag}/{layer}" if tag else layer
    sampled = sample_units(p, plan.unit_ratio, plan.seed, layer)
    q, exact = gram_columns(n, sampled.size, exact_budget, gram_dim)
    if plan.grams and exact:  # exact values of the sampled units
        red["units"] = store(sampled, layer, p)
        red["units"].stats.ranges = plan.drop_constant  # constancy is only needed to drop units
    elif plan.grams:  # too wide for the exact budget: Grams from a sparse random projection
        if {"column", "raw"} & set(plan.grams):
            red["gram_proj"] = SparseProjection(n, p, q, plan.seed, tagged, units=sampled, purpose="gram")
        if "row" in plan.grams:
            red["row_proj"] = SparseProjection(n, p, q, plan.seed, tagged, units=sampled, row_centre=True,
                                               purpose="gram")
        red["stats"] = UnitStats(sampled, ranges=plan.drop_constant)
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
        if p > q:
            red["features"] = SparseProjection(n, p, q, plan.seed, tagged)
        else:
            red["features"] = store(np.arange(p), layer + ".features", p)
            red["features"].stats.ranges = False  # source features: constant columns are the ridge's business
    red["sampled"] = sampled
    return red


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
            data.features = to_numpy(feats.data).copy()
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
            data.units = np.asarray(to_numpy(src.data[:, np.searchsorted(src.units, chosen)]), dtype=np.float32)
            data.unit_index = chosen
        return data
    finally:
        for r in red.values():
            if isinstance(r, UnitStore):
                r.close()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"extract {desc}", unit="img", disable=not enabled, leave=False, dynamic_ncols=True)
