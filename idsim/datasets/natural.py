"""``dataset=natural``: seeded crops of the photographs that ship inside scikit-image.

scikit-image bundles a handful of real photographs in its wheel (``skimage.data``): a portrait,
a cat, a cup of coffee, a rocket on its pad, a motorcycle, the cameraman, coins, the Moon's
surface, and close-ups of brick, grass and gravel. They load without any network access, so they
make an embedded natural-image probe set and a source of natural backgrounds for the generated
object sets (:func:`natural_crop`). Synthetic, logo, text and microscopy images are left out.

Image ``i`` is a square crop of photo ``PHOTOS[i % len(photos)]`` (so the photos are balanced and
the photo name is the label) whose side is a seeded fraction in ``[min_crop_frac, 1]`` of the
photo's shorter side, at a seeded position, optionally mirrored, resized to ``size`` with
Lanczos resampling. The crop parameters come from ``np.random.default_rng([seed, i])``, so image
``i`` depends only on ``(seed, i, size, min_crop_frac, flip, photos)`` and never on ``n_images``.
Grayscale photos are repeated over the three channels.
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
from PIL import Image

from idsim.datasets import cap, distinct_names
from idsim.datasets.base import ProbeSet
from idsim.errors import IdsimError
from idsim.schema import ProbeSetOptions, fraction, int_at_least, opt, optional

#: bump whenever a change alters any pixel, so caches keyed on ``identity()`` invalidate
GENERATOR_VERSION = 1

#: the photographs used, by the name used as label -> ``skimage.data`` loader name
_LOADERS: dict[str, str] = {
    "astronaut": "astronaut",
    "brick": "brick",
    "camera": "camera",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "coins": "coins",
    "grass": "grass",
    "gravel": "gravel",
    "moon": "moon",
    "motorcycle": "stereo_motorcycle",  # the left image of the stereo pair
    "rocket": "rocket",
}
PHOTOS: tuple[str, ...] = tuple(_LOADERS)

_MIN_SIZE = 16


@functools.lru_cache(maxsize=None)
def photo(name: str) -> Image.Image:
    """The full-resolution photograph ``name`` (one of :data:`PHOTOS`) as an RGB PIL image."""
    if name not in _LOADERS:
        raise IdsimError(f"unknown photo {name!r}; valid: {', '.join(PHOTOS)}")
    import skimage.data

    try:
        arr = getattr(skimage.data, _LOADERS[name])()
    except Exception as exc:  # a scikit-image build without its bundled photos
        raise IdsimError(f"cannot load photo {name!r} from scikit-image ({type(exc).__name__}: {exc});"
                         " reinstall scikit-image (the photos ship inside its wheel)") from None
    if isinstance(arr, tuple):  # stereo_motorcycle -> (left, right, disparity)
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=None)
def photos_digest(photos: tuple[str, ...] = PHOTOS) -> str:
    """SHA-256 (first 16 hex digits) of the photos' pixels: part of the sets' cache identity.

    Decoding the photographs to hash them takes about a second, which a warm job (every feature
    cached) needs for nothing else; the digest is remembered on disk under idsim's cache folder,
    keyed by scikit-image's version and by the names, sizes and modification times of the files
    in its data folder, so it is recomputed whenever the photographs could have changed.
    """
    memo = _digest_memo(photos)
    if memo is not None:
        try:
            return memo.read_text().strip()
        except OSError:
            pass
    h = hashlib.sha256()
    for name in photos:
        img = photo(name)
        h.update(f"{name}:{img.width}x{img.height};".encode())
        h.update(img.tobytes())
    digest = h.hexdigest()[:16]
    if memo is not None:
        from idsim.model_names import remember

        remember(memo, digest)
    return digest


def _digest_memo(photos: tuple[str, ...]):
    """Where the digest of ``photos`` is remembered (None when scikit-image's data folder cannot be found)."""
    import importlib.metadata
    import importlib.util
    import os
    from pathlib import Path

    from idsim.model_names import cache_root

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    key = hashlib.sha256(f"{importlib.metadata.version('scikit-image')};{GENERATOR_VERSION};{','.join(photos)};".encode())
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            st = entry.stat()
            key.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    except OSError:
        return None
    return cache_root() / "digests" / f"natural-photos-{key.hexdigest()[:20]}.txt"


def crop_photo(name: str, x0: float, y0: float, side: float, size: int, flip: bool = False) -> Image.Image:
    """The square ``(x0, y0, x0 + side, y0 + side)`` of photo ``name`` (pixels, may be fractional),
    resized to ``size`` x ``size`` with Lanczos resampling and mirrored left-right if ``flip``."""
    img = photo(name).resize((size, size), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side),
                             reducing_gap=3.0)  # large reductions: integer box reduce first (faster)
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img


def crop_params(rng: np.random.Generator, name: str, min_crop_frac: float) -> tuple[float, float, float]:
    """Draw a crop ``(x0, y0, side)`` of photo ``name``: side uniform in log scale between
    ``min_crop_frac`` and 1 times the shorter side, position uniform over the photo."""
    w, h = photo(name).size
    short = min(w, h)
    frac = math.exp(rng.uniform(math.log(min_crop_frac), 0.0)) if min_crop_frac < 1.0 else 1.0
    side = frac * short
    x0 = rng.uniform(0.0, w - side)
    y0 = rng.uniform(0.0, h - side)
    return float(x0), float(y0), float(side)


def natural_crop(rng: np.random.Generator, size: int, min_crop_frac: float = 0.3,
                 photos: Sequence[str] = PHOTOS, flip: bool = True) -> np.ndarray:
    """A random natural-image patch: ``(size, size, 3)`` uint8, drawn with ``rng``.

    The photo, crop and mirroring all come from ``rng`` (a fixed number of draws), so callers
    seeding ``rng`` per image get deterministic backgrounds.
    """
    name = photos[int(rng.integers(len(photos)))]
    x0, y0, side = crop_params(rng, name, min_crop_frac)
    mirror = bool(rng.uniform() < 0.5) and flip
    return np.asarray(crop_photo(name, x0, y0, side, size, mirror))


class NaturalProbeSet(ProbeSet):
    """Seeded square crops of scikit-image's bundled photographs, labelled by photo.

    Build it from :class:`NaturalOptions` (which checks the values); the arguments are its fields.

    Args:
        n_images: how many images the set holds.
        seed: crop seed.
        size: side of the square RGB images in pixels.
        min_crop_frac: smallest crop side as a fraction of the photo's shorter side, in (0, 1];
            1 gives the largest square of each photo (only the position varies).
        flip: mirror half of the crops left-right.
        photos: which photos to use (``None``: all of :data:`PHOTOS`); image ``i`` shows
            ``photos[i % len(photos)]``.
    """

    name = "natural"

    def __init__(self, *, n_images: int, seed: int, size: int, min_crop_frac: float, flip: bool,
                 photos: Sequence[str] | None):
        self.n_images, self.seed, self.size = int(n_images), int(seed), int(size)
        self.min_crop_frac, self.flip = float(min_crop_frac), bool(flip)
        self.photos = PHOTOS if photos is None else tuple(str(p) for p in photos)

    def __len__(self) -> int:
        return self.n_images

    def crop(self, i: int) -> tuple[str, float, float, float, bool]:
        """``(photo, x0, y0, side, flipped)`` of image ``i``."""
        i = self._index(i)
        name = self.photos[i % len(self.photos)]
        rng = np.random.default_rng([self.seed, i])
        x0, y0, side = crop_params(rng, name, self.min_crop_frac)
        flipped = bool(rng.uniform() < 0.5) and self.flip
        return name, x0, y0, side, flipped

    def image(self, i: int) -> Image.Image:
        name, x0, y0, side, flipped = self.crop(i)
        return crop_photo(name, x0, y0, side, self.size, flipped)

    def label(self, i: int) -> str:
        return self.photos[self._index(i) % len(self.photos)]

    def stimulus_id(self, i: int) -> str:
        i = self._index(i)
        return f"natural-{self.seed}-{i:05d}-{self.label(i)}"

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "size": self.size,
            "n_images": self.n_images,
            "min_crop_frac": self.min_crop_frac,
            "flip": self.flip,
            "photos": list(self.photos),
            "photos_digest": photos_digest(self.photos),
        }

    def __repr__(self) -> str:
        return (f"NaturalProbeSet(n_images={self.n_images}, seed={self.seed}, size={self.size},"
                f" min_crop_frac={self.min_crop_frac}, flip={self.flip}, photos={list(self.photos)})")


@dataclass
class NaturalOptions(ProbeSetOptions):
    """``dataset=natural``: crops of scikit-image's bundled photographs (conf/dataset/natural.yaml)."""

    name: str = "natural"
    # how many images the set holds (image i never depends on it)
    n_images: int = opt(100, "a positive integer (how many images)", int_at_least(1))
    # crop seed; the YAML follows the run's `seed`
    seed: int = opt(0, "an integer >= 0 (the crop seed)", int_at_least(0))
    # side of the square images in pixels
    size: int = opt(256, f"an integer >= {_MIN_SIZE} (pixels)", int_at_least(_MIN_SIZE))
    # smallest crop side as a fraction of the photo's shorter side; 1: only the position varies
    min_crop_frac: float = opt(0.4, "a number in (0, 1] (smallest crop side, as a fraction of the photo's shorter"
                                    " side)", fraction)
    # mirror half of the crops left-right
    flip: bool = True
    # null: all photos; or a list of names, e.g. [astronaut, chelsea, coffee, rocket]
    photos: Optional[List[str]] = opt(None, f"null (all photos) or a non-empty list of distinct photo names from:"
                                            f" {', '.join(PHOTOS)}", optional(distinct_names(PHOTOS)))

    def build(self) -> NaturalProbeSet:
        return cap(NaturalProbeSet(n_images=self.n_images, seed=self.seed, size=self.size,
                                   min_crop_frac=self.min_crop_frac, flip=self.flip, photos=self.photos),
                   self.n_images)
