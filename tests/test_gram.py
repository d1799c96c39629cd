"""pattern_gram against a float64 NumPy reference, across the paths the benchmarks tuned.

The chunked, row-blocked product has three ways to go wrong that a small, single-chunk input would
not show: a chunk boundary that drops or repeats columns, a lower-triangle block mirrored onto the
wrong side, and centring by a mean taken after rounding to float32. So the inputs here span many
chunks (small ``chunk_bytes``), both blocking regimes (4 row blocks below 512 stimuli, 8 from it),
unequal block edges (n not a multiple of the blocks), a column subset, and a mean offset of 1e4
that float32 centring would turn into errors of ~1e-3.
"""
from __future__ import annotations

import numpy as np
import pytest

from idsim.gram import pattern_gram


def reference(X: np.ndarray, kind: str, columns=None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if columns is not None:
        X = X[:, columns]
    if kind == "column":
        X = X - X.mean(0)
    elif kind == "row":
        X = X - X.mean(1, keepdims=True)
    return X @ X.T


@pytest.mark.parametrize("n", [10, 70, 530])
@pytest.mark.parametrize("kind", ["column", "row", "raw"])
def test_pattern_gram_matches_float64_reference_across_chunks_and_blocks(n, kind):
    rng = np.random.default_rng(n)
    p = 1_037
    X = (rng.standard_normal((n, p)) * rng.uniform(0.1, 3.0, p) + 1e4).astype(np.float32)
    X[:, 5] = 7.0  # a constant unit: centred to exactly zero
    cols = np.sort(rng.choice(p, 613, replace=False))
    for columns in (None, cols):
        want = reference(X, kind, columns)
        # about 3 columns per chunk at n = 530, ~40 at n = 10: hundreds of chunk boundaries
        got = pattern_gram(X, kind, columns=columns, chunk_bytes=8 * n * 3 + 5)
        scale = np.abs(want).max()
        assert got.shape == (n, n) and got.dtype == np.float64
        np.testing.assert_allclose(got, got.T, rtol=0, atol=0)  # mirrored exactly
        assert np.abs(got - want).max() <= 1e-12 * scale, (kind, n, columns is None)


def test_pattern_gram_uses_a_given_mean_and_spilled_layers(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((67, 900)) + 3.0).astype(np.float32)
    mm = np.memmap(tmp_path / "layer.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(tmp_path / "layer.f32", dtype=np.float32, mode="r", shape=X.shape)
    want = reference(X, "column")
    mean = X.astype(np.float64).mean(0)
    for data in (mm, ro):
        got = pattern_gram(data, "column", mean=mean, chunk_bytes=8 * 67 * 50)
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    # a wrong mean must show: the Gram is not centring-invariant
    off = pattern_gram(X, "column", mean=mean + 0.5)
    assert np.abs(off - want).max() > 1e-3 * np.abs(want).max()


def test_pattern_gram_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="valid: column, row, raw"):
        pattern_gram(np.zeros((3, 4), np.float32), "rows")
