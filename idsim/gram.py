"""Gram matrices of response patterns: the one implementation every metric and reducer uses.

``pattern_gram(data, kind)`` is the float64 Gram matrix of the rows (stimuli) of ``data``
(stimuli x units: a NumPy array, a memory-mapped spilled layer, or a torch tensor on any device),
read in column chunks so that spilled layers never come back into RAM whole:

- ``"column"``: every unit centred over stimuli first: CKA, and Euclidean RDMs;
- ``"row"``: every stimulus's pattern centred over units first: correlation RDMs;
- ``"raw"``: nothing centred: cosine RDMs.

Centring the features before the product (not the Gram after it) keeps the result exact for
activations with large means; constant columns centre to exactly 0 and add nothing. The
products run in torch, in float64, where the data is (its CPU build's BLAS was 4x faster than
NumPy's on these short-and-wide products; on a GPU nothing goes back to the host but the n x n
result), over the blocks on and below the diagonal only (the Gram is symmetric).
"""
from __future__ import annotations

import mmap

import numpy as np

KINDS = ("column", "row", "raw")


def release(arr) -> None:
    """Drop a memory-mapped array's pages from this process (they stay in the file / page cache).

    Pages of a shared file mapping that were written or read count towards the process's resident
    memory until unmapped; without this a spilled layer would end up resident after all.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None and isinstance(getattr(arr, "base", None), mmap.mmap):
        mm = arr.base
    if mm is not None and hasattr(mm, "madvise"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def pattern_gram(data, kind: str = "column", mean: np.ndarray | None = None, columns: np.ndarray | None = None,
                 chunk_bytes: int = 16 * 2**20) -> np.ndarray:
    """Gram matrix (float64, stimuli x stimuli) of the rows of ``data``; see the module docs.

    ``mean``: the column means, when already known (``"column"`` only). ``columns``: restrict
    the units used (e.g. the non-constant ones). ``chunk_bytes``: the float64 chunk's size; 16 MB
    stays in the caches between its conversion and its products (a 150 x 401,408 layer: 0.18 s,
    against 0.20 s with 64 MB chunks; ``benchmarks/inner_bench.py``).
    """
    import torch

    if kind not in KINDS:
        raise ValueError(f"unknown Gram kind {kind!r}; valid: {', '.join(KINDS)}")
    spilled = data if isinstance(data, np.memmap) else None
    if not isinstance(data, torch.Tensor):
        data = np.asarray(data)
        if data.ndim == 1:
            data = data[:, None]
        if not data.flags.writeable:  # torch views only writable memory; a read-only array is copied once
            data = np.array(data)
        data = torch.from_numpy(data)  # no copy: RAM or the file mapping
    n, p = data.shape
    cols = None if columns is None else torch.as_tensor(np.asarray(columns), device=data.device)
    width = p if cols is None else cols.numel()
    step = max(1, chunk_bytes // (8 * max(n, 1)))

    # one float64 buffer for every chunk: fresh allocations cost page faults (5x the conversion itself)
    buf = torch.empty((n, min(step, max(width, 1))), dtype=torch.float64, device=data.device)
    sel = None if cols is None else torch.empty((n, buf.shape[1]), dtype=data.dtype, device=data.device)

    def block(start: int) -> torch.Tensor:
        stop = min(start + step, width)
        if cols is None:
            part = data[:, start:stop]
        else:
            part = torch.index_select(data, 1, cols[start:stop], out=sel[:, :stop - start])
        out = buf[:, :stop - start]
        out.copy_(part)
        if spilled is not None:
            release(spilled)
        return out

    starts = range(0, width, step)
    if kind == "column":
        mu = torch.as_tensor(mean, dtype=torch.float64, device=data.device) if mean is not None else None
        if mu is not None and cols is not None:
            mu = mu[cols]
        if mu is None:
            mu = torch.cat([block(s).mean(0) for s in starts]) if width else torch.zeros(0, dtype=torch.float64)
    elif kind == "row":
        rows = torch.zeros(n, dtype=torch.float64, device=data.device)
        for s in starts:  # the same chunked sums in RAM and on disk: identical results either way
            rows += block(s).sum(1)
        rows /= max(width, 1)
    gram = torch.zeros((n, n), dtype=torch.float64, device=data.device)
    # the Gram is symmetric: only the blocks on and below the diagonal are computed (4 row blocks: 10 of 16;
    # 1.2x per chunk in benchmarks/inner_bench.py; 8 blocks, 36 of 64, from 512 images), then mirrored
    nb = 8 if n >= 512 else 4 if n >= 64 else 1
    edges = [round(i * n / nb) for i in range(nb + 1)]
    for s in starts:
        b = block(s)
        if kind == "column":
            b -= mu[s:s + b.shape[1]]
        elif kind == "row":
            b -= rows[:, None]
        for lo, hi in zip(edges[:-1], edges[1:]):
            gram[lo:hi, :hi].addmm_(b[lo:hi], b[:hi].T)
    if nb > 1:
        gram = gram.tril() + gram.tril(-1).T
    return gram.cpu().numpy()


def centred_gram(X) -> np.ndarray:
    """Linear Gram matrix of column-centred features (float64): ``(X - mean) (X - mean)^T``."""
    if hasattr(X, "detach"):
        X = X.detach()
    return pattern_gram(X, "column")
