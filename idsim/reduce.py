"""Per-layer reductions that consume activations batch by batch.

Feature extraction never keeps a whole layer for all images by itself: each recorded layer owns
reducers whose ``update(acts, rows)`` is called with one batch of flattened activations
(``acts``: batch x units, float32, on the model's device) and the image rows they belong to.
What each reducer keeps is what the metrics need:

- :class:`UnitStore` keeps the exact values of a subset of units (all, a seeded ``unit_ratio``
  sample, ...), in RAM below a budget and in a scratch file on disk above it; from it come the
  centred Gram matrix (CKA, RSA) and the target units for regression.
- :class:`SparseProjection` keeps a seeded sparse random projection of the units (the
  source features for regression), as both papers do.

The memory bound of a run is therefore set here, layer by layer, and nowhere else.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .errors import IdsimError
from .gram import release
from .procs import reserve

DEFAULT_RAM_BUDGET = 1024 * 2**20  # bytes of exact values kept in RAM (all layers) before spilling to disk


def layer_rng(seed: int, layer: str, purpose: str) -> np.random.Generator:
    """A generator seeded by the run seed, the layer name and what it is for (stable across runs)."""
    return np.random.default_rng([int(seed), zlib.crc32(layer.encode()), zlib.crc32(purpose.encode())])


def n_sampled(n_units: int, ratio: float) -> int:
    """How many of a layer's ``n_units`` units :func:`sample_units` keeps at ``ratio`` (at least 1)."""
    return max(1, int(round(ratio * n_units)))


def sample_units(n_units: int, ratio: float, seed: int, layer: str) -> np.ndarray:
    """Sorted indices of ``round(ratio * n_units)`` units (at least 1), drawn without replacement."""
    if not 0.0 < ratio <= 1.0:
        raise IdsimError(f"unit_ratio must be in (0, 1], got {ratio}")
    k = n_sampled(n_units, ratio)
    if k >= n_units:
        return np.arange(n_units)
    return np.sort(layer_rng(seed, layer, "units").choice(n_units, size=k, replace=False))


def jl_dim(n_samples: int, eps: float = 0.1) -> int:
    """Johnson-Lindenstrauss bound: dimensions that keep pairwise distances within 1 +- eps."""
    return int(4 * math.log(n_samples) / (eps**2 / 2 - eps**3 / 3))


def sparse_projection_matrix(n_features: int, n_components: int, seed: int, density: float | None = None) -> sp.csc_matrix:
    """A sparse random projection matrix (n_features x n_components), Li et al. 2006 / Achlioptas.

    Entries are 0 with probability 1 - density and +-1/sqrt(density * n_components) otherwise,
    with density 1/sqrt(n_features) by default: the distribution of scikit-learn's
    ``SparseRandomProjection(density="auto")``, so that E[||x S||^2] = ||x||^2. Built column by
    column (CSC; its transpose is the CSR a projection multiplies with), rows distinct within a column.
    """
    if density is None:
        density = 1.0 / math.sqrt(n_features)
    rng = np.random.default_rng([int(seed), n_features, n_components])
    counts = rng.binomial(n_features, density, size=n_components)
    if n_features < 1000:
        rows = np.concatenate([np.sort(rng.choice(n_features, size=c, replace=False)) for c in counts])
    else:
        rows = _distinct_sorted_rows(rng, n_features, counts)
    scale = np.float32(1.0 / math.sqrt(density * n_components))
    vals = np.where(rng.random(rows.size) < 0.5, -scale, scale).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sp.csc_matrix((vals, rows, indptr), shape=(n_features, n_components))


def _distinct_sorted_rows(rng: np.random.Generator, n: int, counts: np.ndarray) -> np.ndarray:
    """Row indices for each column in turn, sorted and distinct within a column (the rare collisions redrawn).

    The keys ``column * n + row`` are grouped by column from the start, so sorting each column's few
    thousand keys is sorting them all (4x faster than one sort of the whole array: they stay in the
    caches); after a redraw the array is sorted but for the redrawn keys, which an adaptive sort
    puts in place in one pass.
    """
    base = np.repeat(np.arange(counts.size, dtype=np.int64) * n, counts)
    key = base + rng.integers(0, n, size=int(counts.sum()))
    ends = np.cumsum(counts)
    for start, stop in zip((ends - counts).tolist(), ends.tolist()):
        key[start:stop].sort()
    while True:
        dup = np.flatnonzero(key[1:] == key[:-1]) + 1
        if not dup.size:
            return key - base
        key[dup] = base[dup] + rng.integers(0, n, size=dup.size)
        key.sort(kind="stable")


def to_numpy(x) -> np.ndarray:
    """A reducer's array (NumPy, or a torch tensor kept on the GPU) as NumPy, on the host."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class UnitStore:
    """Exact values of selected units for every image: on the GPU (when extraction runs there and they fit
    ``device_budget``), else in RAM below ``ram_budget``, else in a scratch file."""

    def __init__(self, n_images: int, units: np.ndarray, scratch: Path | None = None, ram_budget: int = DEFAULT_RAM_BUDGET,
                 name: str = "layer", n_features: int | None = None, device: torch.device | None = None,
                 device_budget: int = 0, buffer: np.ndarray | None = None, spill_at: tuple[Path, int] | None = None):
        self.units = np.asarray(units)
        self.n_images = n_images
        shape = (n_images, self.units.size)
        nbytes = shape[0] * shape[1] * 4
        self.path: Path | None = None  # a scratch file of its own, removed by close()
        self.spilled = False
        self._host: torch.Tensor | None = None
        if device is not None and device.type != "cpu" and nbytes <= device_budget:
            self.data = torch.empty(shape, dtype=torch.float32, device=device)  # no host round-trip per batch
        elif nbytes > ram_budget and spill_at is not None:  # a region of a scratch file the run reuses (features.Arena)
            self.spilled = True
            self.data = np.memmap(spill_at[0], dtype=np.float32, mode="r+", offset=spill_at[1], shape=shape)
        elif nbytes > ram_budget and scratch is not None:
            self.spilled = True
            scratch.mkdir(parents=True, exist_ok=True)
            self.path = scratch / f"{name.replace('/', '_')}.{id(self):x}.f32"
            self.data = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=shape)
            reserve(self.path, 0, self.path.stat().st_size, f"{name}'s spilled values")
        elif buffer is not None:  # RAM already faulted in by an earlier model of the run (see features.Arena)
            self.data = buffer[:nbytes].view(np.float32).reshape(shape)
        else:
            self.data = np.empty(shape, dtype=np.float32)
        if isinstance(self.data, np.ndarray):
            self._host = torch.from_numpy(self.data)  # the same memory: batches are copied in by torch
        # every unit of the layer, in order: no column selection needed (``n_features``: the layer's width)
        self._all = n_features is not None and self.units.size == n_features and \
            bool(self.units.size == 0 or (self.units[0] == 0 and self.units[-1] == n_features - 1))
        self._index: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None   # float64 column sums, for the mean
        self.stats = UnitStats(self.units)  # minima and maxima (constancy); ``stats.ranges`` off: one pass less
        self.filled = 0

    def update(self, acts: torch.Tensor, rows: slice) -> None:
        if not self._all:
            if self._index is None or self._index.device != acts.device:
                self._index = torch.as_tensor(self.units, device=acts.device)
            acts = acts.index_select(1, self._index)
        acts = acts.to(torch.float32)
        s = acts.sum(0).to(torch.float64)  # a batch sums exactly enough in float32
        self._sum = s if self._sum is None else self._sum.add_(s)
        self.stats.update(acts, rows)  # the units are already selected
        if self._host is None:
            self.data[rows] = acts
        else:
            self._host[rows] = acts.cpu()
            release(self.data)  # spilled rows live in the page cache, not in this process's memory
        self.filled = max(self.filled, rows.stop)

    def mean(self) -> np.ndarray:
        """Column means (float64), accumulated while streaming."""
        return (self._sum / max(self.filled, 1)).cpu().numpy()

    def constant(self) -> np.ndarray:
        """Boolean mask of units with the same value on every image (zero variance, exactly); all False when
        ``stats.ranges`` is off."""
        return self.stats.constant()

    def close(self) -> None:
        if self.spilled:
            self._host = None
            del self.data
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class UnitStats:
    """Streaming per-unit minimum and maximum of selected units (which are constant), without keeping values."""

    def __init__(self, units: np.ndarray, ranges: bool = True):
        self.units = np.asarray(units)
        self.ranges = ranges  # off: nothing is tracked and no unit is constant (plans that keep constant units)
        self._index: torch.Tensor | None = None
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None

    def update(self, acts: torch.Tensor, rows: slice) -> None:
        if not self.ranges:
            return
        if self.units.size != acts.shape[1]:  # a sample of the units (else every unit, in order)
            if self._index is None or self._index.device != acts.device:
                self._index = torch.as_tensor(self.units, device=acts.device)
            acts = acts.index_select(1, self._index)
        # two reductions, not torch.aminmax: over the batch's rows its CPU kernel took 5x as long as both
        # (benchmarks/inner_bench.py: 0.096 against 0.017 s for 32 x 3.2 M values)
        lo, hi = acts.amin(0), acts.amax(0)
        if self._min is None:
            self._min, self._max = lo, hi
        else:
            torch.minimum(self._min, lo, out=self._min)
            torch.maximum(self._max, hi, out=self._max)

    def constant(self) -> np.ndarray:
        """Boolean mask of the units that had one value on every image (all False when ``ranges`` is off)."""
        if self._min is None:
            return np.zeros(self.units.size, dtype=bool)
        return (self._min == self._max).cpu().numpy()


class SparseProjection:
    """Seeded sparse random projection of every batch to ``n_components`` dimensions.

    ``units``: project only these units (sorted indices; default all ``n_features``).
    ``row_centre``: subtract each image's mean over the (selected) units before projecting, so
    that Gram matrices of the projection approximate those of row-centred patterns (correlation
    RDMs). Inner products are preserved in expectation (``E[S S^T] = I``), with relative errors
    of order ``1/sqrt(n_components)`` (Johnson-Lindenstrauss).
    """

    def __init__(self, n_images: int, n_features: int, n_components: int, seed: int, layer: str,
                 units: np.ndarray | None = None, row_centre: bool = False, purpose: str = "srp"):
        self.units = None if units is None or units.size == n_features else np.asarray(units)
        width = n_features if self.units is None else self.units.size
        matrix = sparse_projection_matrix(width, n_components, seed=layer_rng(seed, layer, purpose).integers(2**31))
        self._t = matrix.T  # components x features (CSR), for a row-major product
        self.n_components = n_components
        self.row_centre = row_centre
        self.data = np.empty((n_images, n_components), dtype=np.float32)
        self._torch: torch.Tensor | None = None
        self._index: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        t = self._t
        return self.data.nbytes + t.data.nbytes + t.indices.nbytes + t.indptr.nbytes

    def _project_cpu(self, acts: torch.Tensor, out: np.ndarray) -> None:
        """The projection on the CPU, into ``out``: a compiled loop over the features (:func:`idsim.kernels.sparse_project`,
        bit for bit SciPy's compressed-column product, without its transposed copy of the batch), as
        many threads as torch uses."""
        from .kernels import match_torch_threads, sparse_project

        if not isinstance(self._t, sp.csc_matrix):
            self._t = self._t.tocsc()  # components x features, by feature
        match_torch_threads()
        sparse_project(acts.contiguous().numpy(), self._t.indptr, self._t.indices, self._t.data, out)

    def update(self, acts: torch.Tensor, rows: slice) -> None:
        if self.units is not None:
            if self._index is None or self._index.device != acts.device:
                self._index = torch.as_tensor(self.units, device=acts.device)
            acts = acts.index_select(1, self._index)
        acts = acts.to(torch.float32)
        if self.row_centre:
            acts = acts - acts.mean(1, keepdim=True)
        if acts.device.type == "cpu":
            self._project_cpu(acts, self.data[rows])
            return
        if self._torch is None or self._torch.device != acts.device:  # torch's sparse kernels on the GPU
            import warnings

            t = self._t.tocsr()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # sparse CSR "beta" notices
                self._torch = torch.sparse_csr_tensor(
                    torch.from_numpy(t.indptr.astype(np.int64)), torch.from_numpy(t.indices.astype(np.int64)),
                    torch.from_numpy(t.data), size=t.shape, device=acts.device)
        if isinstance(self.data, np.ndarray):  # kept on the GPU: no host round-trip per batch
            self.data = torch.empty(self.data.shape, dtype=torch.float32, device=acts.device)
        self.data[rows] = (self._torch @ acts.T).T
