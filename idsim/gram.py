"""Gram matrices of response patterns: the one implementation every metric and reducer uses.

``pattern_gram(data, kind)`` is the float64 Gram matrix of the rows (stimuli) of ``data``
(stimuli x units), read in column chunks so that memory-mapped (spilled) layers never come back
into RAM whole:

- ``"column"``: every unit centred over stimuli first: CKA, and Euclidean RDMs;
- ``"row"``: every stimulus's pattern centred over units first: correlation RDMs;
- ``"raw"``: nothing centred: cosine RDMs.

Centring the features before the product (not the Gram after it) keeps the result exact for
activations with large means; constant columns centre to exactly 0 and add nothing.
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
                 chunk_bytes: int = 64 * 2**20) -> np.ndarray:
    """Gram matrix (float64, stimuli x stimuli) of the rows of ``data``; see the module docs.

    ``mean``: the column means, when already known (``"column"`` only). ``columns``: restrict
    the units used (e.g. the non-constant ones).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown Gram kind {kind!r}; valid: {', '.join(KINDS)}")
    if hasattr(data, "detach") and data.device.type != "cpu":  # values kept on the GPU: the Gram is formed there
        return _device_gram(data, kind, mean, columns, chunk_bytes)
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    n, p = data.shape
    cols = np.arange(p) if columns is None else np.asarray(columns)
    step = max(1, chunk_bytes // (8 * max(n, 1)))
    chunks = [cols[c:c + step] for c in range(0, cols.size, step)]

    def block(c: np.ndarray) -> np.ndarray:
        contiguous = c.size and c[-1] - c[0] == c.size - 1
        out = np.array(data[:, c[0]:c[-1] + 1] if contiguous else data[:, c], dtype=np.float64)
        release(data)
        return out

    in_ram = not isinstance(data, np.memmap) and columns is None  # then numpy reduces without float64 copies
    if kind == "column":
        if mean is None and in_ram:
            mean = np.asarray(data.mean(0, dtype=np.float64))
        elif mean is None:
            mean = np.zeros(p)
            for c in chunks:
                mean[c] = block(c).mean(0)
    elif kind == "row":
        rows = np.zeros(n)  # the same chunked sums in RAM and on disk: identical results either way
        for c in chunks:
            rows += block(c).sum(1)
        rows /= max(cols.size, 1)
    from scipy.linalg.blas import dsyrk

    gram = np.zeros((n, n), order="F")
    for c in chunks:
        b = block(c)
        if kind == "column":
            b -= mean[c]
        elif kind == "row":
            b -= rows[:, None]
        # a symmetric rank-k update (half the multiplications of b @ b.T); b.T is b's memory, Fortran-ordered
        gram = dsyrk(1.0, b.T, beta=1.0, c=gram, trans=1, lower=0, overwrite_c=1)
    upper = np.triu(gram)
    return np.ascontiguousarray(upper + np.triu(gram, 1).T)


def _device_gram(data, kind: str, mean, columns, chunk_bytes: int) -> np.ndarray:
    """:func:`pattern_gram` of a tensor on a GPU, in float64 there (the same centring, in column chunks)."""
    import torch

    n, p = data.shape
    cols = torch.arange(p, device=data.device) if columns is None else torch.as_tensor(columns, device=data.device)
    step = max(1, chunk_bytes // (8 * max(n, 1)))
    chunks = [cols[c:c + step] for c in range(0, cols.numel(), step)]
    if kind == "column":
        mu = (torch.cat([data.index_select(1, c).to(torch.float64).mean(0) for c in chunks]) if mean is None
              else torch.as_tensor(mean, dtype=torch.float64, device=data.device)[cols])
    elif kind == "row":
        rows = sum(data.index_select(1, c).to(torch.float64).sum(1) for c in chunks) / max(cols.numel(), 1)
    gram = torch.zeros((n, n), dtype=torch.float64, device=data.device)
    offset = 0
    for c in chunks:
        b = data.index_select(1, c).to(torch.float64)
        if kind == "column":
            b -= mu[offset:offset + c.numel()]
        elif kind == "row":
            b -= rows[:, None]
        offset += c.numel()
        gram.addmm_(b, b.T)
    return gram.cpu().numpy()


def centred_gram(X) -> np.ndarray:
    """Linear Gram matrix of column-centred features (float64): ``(X - mean) (X - mean)^T``."""
    return pattern_gram(X, "column")
