"""Hand-made (non-neural) image features: the mouse paper's baselines (its Sections 2.6 and 3.5).

Every baseline first brings an image to one geometry: the shorter side resized to ``size``
pixels (bicubic, antialiased) and the centre ``size × size`` square cropped, values in [0, 1];
grayscale (the ITU-R 601 luma of the RGB image) unless said otherwise.

- :func:`gabor_features` (``gabor``): a bank of complex Gabor filters (scikit-image's
  ``gabor_kernel``, bandwidth 1 octave) at ``orientations`` orientations (0 to 180°) and
  ``frequencies`` spatial frequencies (cycles per pixel), applied to the ``size``-pixel
  grayscale image (FFT convolution, zero padding); each filter's energy (the modulus of the
  complex response: a complex cell) is averaged over each cell of a ``grid × grid`` grid
  (8 × 8, as the paper): ``orientations × frequencies × grid²`` features.
- :func:`pca` (``gist``): the principal components of those Gabor features over the probe images
  (the spatial-envelope GIST descriptor of Oliva & Torralba, as the paper builds it): the
  images' coordinates on the first ``components`` components (at most ``n_images - 1``).
- :func:`random_fourier_features` (``rff``): Rahimi & Recht's random Fourier features of the
  grayscale pixels (``size`` pixels a side), ``sqrt(2 / dim) cos(x W + b)`` with ``W`` Gaussian of
  scale ``1 / bandwidth`` and ``b`` uniform on [0, 2π), seeded; ``dim`` matches the regression's
  projection (4,096, as the paper; it took the best of 600 draws, here each seed is one draw);
  ``bandwidth="median"``: the median distance between the probe images' pixel vectors.
- :func:`pixels` (``pixels``): the pixel values themselves (RGB unless ``gray``).

NumPy, SciPy and scikit-image only; all deterministic given the seed.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .errors import IdsimError


def prepare(img: Image.Image, size: int, gray: bool = True) -> np.ndarray:
    """``img`` resized (shorter side ``size``) and centre-cropped to ``size × size``, float32 in [0, 1]."""
    img = img.convert("L" if gray else "RGB")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.float32) / 255.0


def gabor_bank(orientations: int = 8, frequencies: Sequence[float] = (0.05, 0.1, 0.2, 0.4)) -> list[np.ndarray]:
    """Complex Gabor kernels, frequency-major then orientation."""
    from skimage.filters import gabor_kernel

    return [np.asarray(gabor_kernel(float(f), theta=np.pi * k / orientations), dtype=np.complex64)
            for f in frequencies for k in range(orientations)]


def grid_means(x: np.ndarray, grid: int) -> np.ndarray:
    """Means of a 2-D map over the cells of a ``grid × grid`` grid (cells as equal as the size allows)."""
    edges = [np.linspace(0, n, grid + 1).round().astype(int) for n in x.shape]
    rows = np.add.reduceat(x, edges[0][:-1], axis=0) / np.diff(edges[0])[:, None]
    return np.add.reduceat(rows, edges[1][:-1], axis=1) / np.diff(edges[1])[None, :]


def gabor_features(gray: np.ndarray, bank: list[np.ndarray], grid: int = 8) -> np.ndarray:
    """Gabor energy averaged over a grid: (len(bank) * grid²,) float32 for one grayscale image."""
    from scipy.signal import fftconvolve

    if min(gray.shape) < grid:
        raise IdsimError(f"a {gray.shape[1]}x{gray.shape[0]} image cannot be cut into a {grid}x{grid} grid")
    x = gray - gray.mean()
    out = [grid_means(np.abs(fftconvolve(x, k, mode="same")), grid).ravel() for k in bank]
    return np.concatenate(out).astype(np.float32)


def pca(features: np.ndarray, components: int) -> np.ndarray:
    """The rows' coordinates on the first ``components`` principal components (at most ``n - 1``)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(0)
    k = max(1, min(int(components), x.shape[0] - 1, x.shape[1]))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return (u[:, :k] * s[:k]).astype(np.float32)


def median_distance(x: np.ndarray) -> float:
    """The median Euclidean distance between distinct rows (the usual RBF bandwidth heuristic)."""
    from scipy.spatial.distance import pdist

    d = pdist(np.asarray(x, dtype=np.float64))
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def rff_weights(n_features: int, dim: int, bandwidth: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded projection ``W`` (n_features × dim, scale 1 / bandwidth) and phases ``b`` of random Fourier features."""
    rng = np.random.default_rng([int(seed), n_features, dim])
    w = rng.standard_normal((n_features, dim)).astype(np.float32) / np.float32(bandwidth)
    b = rng.uniform(0.0, 2.0 * np.pi, size=dim).astype(np.float32)
    return w, b


def random_fourier_features(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sqrt(2 / dim) cos(x W + b)`` for rows ``x`` (Rahimi & Recht 2007: an RBF kernel's features)."""
    z = np.asarray(x, dtype=np.float32) @ w + b
    return (np.sqrt(2.0 / w.shape[1]) * np.cos(z)).astype(np.float32)


def batched(probe, batch_size: int, fn) -> Iterable[tuple[slice, np.ndarray]]:
    """``fn`` of every image, in row batches."""
    n = len(probe)
    for s in range(0, n, batch_size):
        rows = range(s, min(n, s + batch_size))
        yield slice(s, rows.stop), np.stack([fn(probe.image(i)) for i in rows])


__all__ = ["prepare", "gabor_bank", "gabor_features", "grid_means", "pca", "median_distance", "rff_weights",
           "random_fourier_features", "batched"]
