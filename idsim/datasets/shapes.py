"""The embedded default probe set: procedurally generated shapes on textured backgrounds.

Every image shows one anti-aliased foreground object from one of eight categories (ellipse,
rectangle, triangle, star, cross, ring, crescent, hexagon) at a varied position, scale,
rotation and aspect ratio, in a random colour with linear or radial shading (sometimes a
faint surface texture too), sometimes with a soft shadow and a small distractor shape, over a
natural-looking background: coloured 1/f ("pink") noise, a smooth colour gradient, or a mix
of both, occasionally with faint stripes. The spirit is that of the synthetic-object sets
used in neuroscience (HvM).

Nothing is downloaded and only numpy and Pillow are needed. Image ``i`` depends only on
``(seed, size, i)``: the scene parameters come from ``np.random.default_rng([seed, i, 0])``
and the pixel noise from ``np.random.default_rng([seed, i, 1])``, so

* the same seed gives bit-identical pixels across calls and processes,
* ``n_images`` only caps the set (a smaller set is a prefix of a larger one),
* the scene layout (category, pose, colours...) does not depend on ``size`` either, so the
  same image rendered at two sizes shows the same scene.

Categories cycle with ``i % 8``, so any prefix is balanced to within one image per category.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from idsim.datasets import cap
from idsim.datasets.base import ProbeSet
from idsim.schema import ProbeSetOptions, int_at_least, opt

#: bump whenever a change alters any pixel, so caches keyed on ``identity()`` invalidate
GENERATOR_VERSION = 1

CATEGORIES: tuple[str, ...] = (
    "ellipse",
    "rectangle",
    "triangle",
    "star",
    "cross",
    "ring",
    "crescent",
    "hexagon",
)

_MIN_SIZE = 32
_SUPERSAMPLE = 2  # objects are drawn at 2x and downsampled with LANCZOS


# --------------------------------------------------------------------------------------------
# shape outlines, in unit coordinates (object roughly fills the unit disc)
# --------------------------------------------------------------------------------------------

def _circle(n: int = 96, radius: float = 1.0, dx: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([dx + radius * np.cos(t), radius * np.sin(t)], axis=1)


def _regular(k: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(k) * (2.0 * np.pi / k)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * (np.pi / points)
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float) -> np.ndarray:
    a, b = arm, 1.0
    return np.array(
        [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a),
         (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)],
        dtype=float,
    )


def _outlines(category: str, p: dict[str, float]) -> list[tuple[np.ndarray, int]]:
    """Polygons to fill in order, each with its fill value (255 adds, 0 cuts a hole)."""
    if category == "ellipse":
        return [(_circle(), 255)]
    if category == "rectangle":
        return [(np.array([(-1, -0.75), (1, -0.75), (1, 0.75), (-1, 0.75)], float), 255)]
    if category == "triangle":
        return [(_regular(3, 1.0, -np.pi / 2) + [0.0, 0.2], 255)]
    if category == "star":
        return [(_star(int(p["star_points"]), p["star_inner"]), 255)]
    if category == "cross":
        return [(_cross(p["cross_arm"]), 255)]
    if category == "ring":
        return [(_circle(), 255), (_circle(radius=p["ring_inner"]), 0)]
    if category == "crescent":
        return [(_circle(), 255), (_circle(radius=p["crescent_cut"], dx=p["crescent_dx"]), 0)]
    if category == "hexagon":
        return [(_regular(6, 1.0, 0.0), 255)]
    raise ValueError(category)  # pragma: no cover - categories are internal


def _shape_params(rng: np.random.Generator) -> dict[str, float]:
    """Per-category free parameters (always all drawn, so the stream never depends on category)."""
    return {
        "star_points": float(rng.integers(5, 7)),
        "star_inner": float(rng.uniform(0.38, 0.55)),
        "cross_arm": float(rng.uniform(0.24, 0.36)),
        "ring_inner": float(rng.uniform(0.5, 0.68)),
        "crescent_cut": float(rng.uniform(0.8, 0.92)),
        "crescent_dx": float(rng.uniform(0.4, 0.6)),
    }


def _draw_mask(
    category: str, p: dict[str, float], cx: float, cy: float, r: float, aspect: float,
    theta: float, size: int,
) -> np.ndarray:
    """Anti-aliased coverage mask (float32 in [0, 1], shape (size, size)) of one object.

    ``cx, cy, r`` are in units of the image side; the shape is squashed along its own x axis
    by ``aspect``, rotated by ``theta`` and placed at ``(cx, cy)``.
    """
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    polys = []
    for pts, fill in _outlines(category, p):
        q = pts * np.array([r * aspect, r])
        q = (q @ rot.T + np.array([cx, cy])) * size  # final-pixel coordinates
        polys.append((q, fill))
    # draw only the object's bounding box (padded for the LANCZOS support), at 2x
    allq = np.concatenate([q for q, _ in polys])
    x0, y0 = (max(0, int(math.floor(v)) - 4) for v in allq.min(axis=0))
    x1, y1 = (min(size, int(math.ceil(v)) + 4) for v in allq.max(axis=0))
    mask = np.zeros((size, size), dtype=np.float32)
    if x1 <= x0 or y1 <= y0:
        return mask
    k = _SUPERSAMPLE
    canvas = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k), 0)
    draw = ImageDraw.Draw(canvas)
    for q, fill in polys:
        qq = (q - np.array([x0, y0])) * k
        draw.polygon([tuple(v) for v in qq.tolist()], fill=fill)
    small = canvas.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    mask[y0:y1, x0:x1] = np.asarray(small, dtype=np.float32) * np.float32(1.0 / 255.0)
    return mask


# --------------------------------------------------------------------------------------------
# colours and backgrounds
# --------------------------------------------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour in [0, 1], shaped (3, 1, 1) to broadcast over channels-first images."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32).reshape(3, 1, 1)


def _luma(rgb: np.ndarray) -> float:
    return float(rgb.ravel() @ np.array([0.299, 0.587, 0.114], dtype=np.float32))


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate a 2-d array by whole pixels, filling with zeros (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        a[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _pink_noise(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """1/f^alpha noise field in [0, 1] (float32, shape (size, size))."""
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-alpha)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(f.shape, dtype=np.float32)
            + 1j * rng.standard_normal(f.shape, dtype=np.float32)) * amp
    field = np.fft.irfft2(spec, s=(size, size)).astype(np.float32)
    field *= np.float32(1.0 / (4.6 * max(float(field.std()), 1e-8)))  # ~1st..99th percentile
    field += np.float32(0.5)
    return np.clip(field, 0.0, 1.0, out=field)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the image side."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return t[None, :], t[:, None]  # xx (1, size), yy (size, 1): broadcast to (size, size)


def _random_colour(rng: np.random.Generator, s_lo: float, s_hi: float,
                   v_lo: float, v_hi: float) -> np.ndarray:
    return _hsv(rng.uniform(), rng.uniform(s_lo, s_hi), rng.uniform(v_lo, v_hi))


# --------------------------------------------------------------------------------------------
# the probe set
# --------------------------------------------------------------------------------------------

class ShapesProbeSet(ProbeSet):
    """Procedurally generated objects on textured backgrounds (the default probe set).

    Build it from :class:`ShapesOptions` (which checks the values); the arguments are its fields.

    Args:
        n_images: how many images the set holds.
        seed: generator seed; image ``i`` depends only on ``(seed, size, i)``.
        size: side of the square RGB images in pixels.
    """

    name = "shapes"
    categories: tuple[str, ...] = CATEGORIES

    def __init__(self, *, n_images: int, seed: int, size: int):
        self.n_images, self.seed, self.size = int(n_images), int(seed), int(size)

    # -- ProbeSet interface ------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_images

    def image(self, i: int) -> Image.Image:
        return self._render(self._index(i))[0]

    def stimulus_id(self, i: int) -> str:
        return f"shapes-{self.seed}-{self._index(i):05d}"

    def label(self, i: int) -> str:
        return CATEGORIES[self._index(i) % len(CATEGORIES)]

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "size": self.size,
            "n_images": self.n_images,
        }

    def __repr__(self) -> str:
        return f"ShapesProbeSet(n_images={self.n_images}, seed={self.seed}, size={self.size})"

    # -- rendering ---------------------------------------------------------------------------

    def _render(self, i: int) -> tuple[Image.Image, np.ndarray]:
        """Image ``i`` plus the main object's coverage mask ((size, size) float32 in [0, 1])."""
        size = self.size
        prm = np.random.default_rng([self.seed, i, 0])  # scene parameters: size-independent
        noise_rng = np.random.default_rng([self.seed, i, 1])  # pixel noise fields
        xx, yy = _grid(size)

        # ---- background ------------------------------------------------------------------
        kind = int(prm.choice(3, p=[0.4, 0.25, 0.35]))  # 0 noise, 1 gradient, 2 mix
        base_h = prm.uniform()
        c1 = _hsv(base_h, prm.uniform(0.15, 0.75), prm.uniform(0.2, 0.65))
        c2 = _hsv(base_h + prm.uniform(-0.25, 0.25), prm.uniform(0.1, 0.7),
                  prm.uniform(0.45, 0.95))
        g1 = _hsv(prm.uniform(), prm.uniform(0.1, 0.7), prm.uniform(0.25, 0.9))
        g2 = _hsv(prm.uniform(), prm.uniform(0.1, 0.7), prm.uniform(0.25, 0.9))
        alpha1 = prm.uniform(1.3, 2.2)
        alpha2 = prm.uniform(0.8, 1.4)
        fine_amp = prm.uniform(0.05, 0.2)
        radial_grad = prm.uniform() < 0.3
        gphi = prm.uniform(0.0, 2 * np.pi)
        gcx, gcy = (float(v) for v in prm.uniform(0.0, 1.0, size=2))
        mix_w = prm.uniform(0.35, 0.65)
        stripes = prm.uniform() < 0.2
        s_phi, s_freq, s_amp, s_phase = (prm.uniform(0, np.pi), prm.uniform(4.0, 14.0),
                                         prm.uniform(0.025, 0.06), prm.uniform(0, 2 * np.pi))

        # images are composed channels-first, (3, size, size) float32 in [0, 1]: broadcasting
        # (3, 1, 1) colours over (size, size) fields is much faster than channels-last
        bg = None
        if kind in (0, 2):
            n1 = _pink_noise(noise_rng, size, alpha1)
            n2 = _pink_noise(noise_rng, size, alpha2)
            bg = (c1 * (1.0 - n1) + c2 * n1) * (1.0 + fine_amp * (2.0 * n2 - 1.0))
        if kind in (1, 2):
            if radial_grad:
                t = np.sqrt((xx - gcx) ** 2 + (yy - gcy) ** 2) / 1.2
            else:
                t = (xx - 0.5) * math.cos(gphi) + (yy - 0.5) * math.sin(gphi) + 0.5
            t = np.clip(t, 0.0, 1.0)
            grad = g1 * (1.0 - t) + g2 * t
            bg = grad if bg is None else mix_w * bg + (1.0 - mix_w) * grad
        assert bg is not None
        if stripes:
            phase = (xx * math.cos(s_phi) + yy * math.sin(s_phi)) * (2 * np.pi * s_freq) + s_phase
            bg = bg * (1.0 + s_amp * np.sin(phase))

        # ---- main object pose and appearance ----------------------------------------------
        category = CATEGORIES[i % len(CATEGORIES)]
        shape_p = _shape_params(prm)
        r = prm.uniform(0.16, 0.32)
        squashable = category not in ("cross", "star")
        aspect = prm.uniform(0.6, 1.0) if squashable else prm.uniform(0.8, 1.0)
        theta = prm.uniform(0.0, 2 * np.pi)
        lo, hi = max(r * 0.95, 0.22), min(1.0 - r * 0.95, 0.78)
        cx, cy = (float(v) for v in prm.uniform(lo, hi, size=2))
        obj_col = _random_colour(prm, 0.35, 1.0, 0.35, 1.0)
        alt_v_dark, alt_v_light = prm.uniform(0.1, 0.3), prm.uniform(0.85, 1.0)
        alt_h = prm.uniform(0.35, 0.65)
        shading_radial = prm.uniform() < 0.5
        shade_strength = prm.uniform(0.3, 0.8)
        shade_phi = prm.uniform(0.0, 2 * np.pi)
        shadow = prm.uniform() < 0.4
        shadow_dx, shadow_dy = (float(v) for v in prm.uniform(-0.03, 0.03, size=2))
        shadow_k = prm.uniform(0.25, 0.5)
        textured = prm.uniform() < 0.35  # faint 1/f surface texture on the object
        tex_alpha, tex_amp = prm.uniform(1.0, 1.8), prm.uniform(0.25, 0.5)

        # distractor: a small shape of any category, placed away from the main object
        distractor = prm.uniform() < 0.35
        d_cat = CATEGORIES[int(prm.integers(len(CATEGORIES)))]
        d_p = _shape_params(prm)
        d_r = prm.uniform(0.05, 0.09)
        d_aspect, d_theta = prm.uniform(0.6, 1.0), prm.uniform(0.0, 2 * np.pi)
        d_col = _random_colour(prm, 0.2, 1.0, 0.25, 1.0)
        d_candidates = prm.uniform(d_r + 0.02, 1.0 - d_r - 0.02, size=(8, 2))
        d_pos = None
        for dx_, dy_ in d_candidates:
            if math.hypot(dx_ - cx, dy_ - cy) > r + d_r + 0.04:
                d_pos = (float(dx_), float(dy_))
                break

        # ---- compose -----------------------------------------------------------------------
        img = bg
        if distractor and d_pos is not None:
            dm = _draw_mask(d_cat, d_p, d_pos[0], d_pos[1], d_r, d_aspect, d_theta, size)
            d_shade = 1.0 + 0.25 * ((xx - d_pos[0]) - (yy - d_pos[1])) / d_r
            d_rgb = d_col * np.clip(d_shade, 0.6, 1.3)
            img = img + (d_rgb - img) * dm

        mask = _draw_mask(category, shape_p, cx, cy, r, aspect, theta, size)

        # make sure the object stands out from what lies beneath it
        under = (img * mask).sum(axis=(1, 2)).reshape(3, 1, 1) / max(float(mask.sum()), 1e-6)
        if abs(_luma(obj_col) - _luma(under)) < 0.2 and float(np.abs(obj_col - under).max()) < 0.4:
            h, s, _ = colorsys.rgb_to_hsv(*obj_col.ravel().tolist())
            v = alt_v_dark if _luma(under) > 0.45 else alt_v_light
            obj_col = _hsv(h + alt_h, max(s, 0.5), v)

        if shadow:
            sh_img = Image.fromarray((mask * 255.0).astype(np.uint8))  # mode L
            sh_img = sh_img.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.02 * size)))
            sh = np.asarray(sh_img, dtype=np.float32) * np.float32(1.0 / 255.0)
            sh = _shift(sh, int(round(shadow_dy * size)), int(round(shadow_dx * size)))
            img = img * (1.0 - shadow_k * sh)

        if shading_radial:
            hx = cx + 0.45 * r * math.cos(shade_phi)
            hy = cy + 0.45 * r * math.sin(shade_phi)
            d = np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / (1.45 * r)
            shade = 1.0 + shade_strength * (0.45 - d)
        else:
            t = ((xx - cx) * math.cos(shade_phi) + (yy - cy) * math.sin(shade_phi)) / r
            shade = 1.0 + 0.5 * shade_strength * np.clip(t, -1.0, 1.0)
        if textured:
            shade = shade * (1.0 + tex_amp * (_pink_noise(noise_rng, size, tex_alpha) - 0.5))
        obj_rgb = obj_col * np.clip(shade, 0.25, 1.6)
        img = img + (obj_rgb - img) * mask

        out = np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        rgb = Image.merge("RGB", [Image.fromarray(ch) for ch in out])
        return rgb, mask


@dataclass
class ShapesOptions(ProbeSetOptions):
    """``dataset=shapes``: the embedded default set (conf/dataset/shapes.yaml)."""

    name: str = "shapes"
    # how many images the set holds (image i never depends on it)
    n_images: int = opt(100, "a positive integer (how many images)", int_at_least(1))
    # generator seed; the YAML follows the run's `seed`
    seed: int = opt(0, "an integer >= 0 (the generator seed)", int_at_least(0))
    # side of the square images in pixels
    size: int = opt(256, f"an integer >= {_MIN_SIZE} (pixels)", int_at_least(_MIN_SIZE))

    def build(self) -> ShapesProbeSet:
        return cap(ShapesProbeSet(n_images=self.n_images, seed=self.seed, size=self.size), self.n_images)
