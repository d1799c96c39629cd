"""``dataset=texture_noise``: Portilla–Simoncelli textures and spectrally matched noise.

In the spirit of Freeman, Ziemba et al. (2013), the stimuli used to separate V2 from V1: for
several texture *families* (source photographs) and several *samples* of each, a naturalistic
texture is synthesised with the Portilla–Simoncelli (PS) texture model, and a *noise* image is
made with exactly the same Fourier amplitude spectrum but random phase. Both are grayscale,
share the same mean (mid gray) and contrast gain, and are shown in a soft-edged circular aperture
on that gray (``aperture: false`` shows the full square). Images are 3-channel copies of gray.

Source photographs ship inside installed wheels, so nothing is downloaded: ``brick``, ``grass``,
``gravel`` (scikit-image), ``reptile`` (plenoptic's reptile skin), and texture-like crops of
scikit-image's immunohistochemistry slide (``tissue``) and Hubble deep field (``stars``).

Synthesis uses plenoptic's ``PortillaSimoncelli`` model and ``MetamerCTF`` (coarse-to-fine, all
scales together), Adam with AMSGrad and a cosine learning-rate schedule, started from uniform
noise around the photo's mean drawn from a ``torch.Generator`` seeded by (seed, family, sample).
It runs on the CPU with one thread: the PS model is many small FFTs, which gain little from
intra-op threads and slow down badly on a busy machine, and one thread fixes the reduction order.
On 2 busy CPU cores one 128 px texture at the default 300 iterations takes about 30 s (256 px:
about 60 s), so the default 24 textures take ~12 min once; afterwards they come from the
disk cache ``<cache_dir>/textures/<key>.png`` (16-bit PNG, key = hash of everything that
determines the texture), written atomically; unreadable files are re-synthesised.

Image order interleaves ``i -> (sample, family, kind)`` with kind ``texture`` then ``noise``, so
any prefix covers the families and both kinds; only the textures that the images asked for need
are synthesised, and image ``i`` never depends on ``n_images``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
from PIL import Image, PngImagePlugin

from idsim.datasets import cache_dir as idsim_cache_dir
from idsim.datasets import cap, distinct_names
from idsim.datasets.base import ProbeSet
from idsim.errors import IdsimError
from idsim.schema import ProbeSetOptions, fail, int_at_least, opt, optional

log = logging.getLogger(__name__)

#: bump whenever a change alters any pixel, so caches keyed on ``identity()`` invalidate
GENERATOR_VERSION = 1

KINDS: tuple[str, str] = ("texture", "noise")

#: mean gray of every image and of the aperture surround: 128 in 8-bit, exactly
GRAY_U8 = 128
GRAY = GRAY_U8 / 255.0

# synthesis settings that are not exposed as options (they are part of every cache key)
SPATIAL_CORR_WIDTH = 7  # PS autocorrelation window (the model's standard)
LEARNING_RATE = 0.02  # Adam (AMSGrad) initial rate, cosine-annealed to 0 over the iterations
CTF_ITERS = 7  # coarse-to-fine: iterations spent on each scale before adding the next
INIT_AMPLITUDE = 0.1  # initial image: photo mean + uniform noise of this peak-to-peak range
CONVERGED_RATIO = 0.5  # warn when the final PS loss is above this fraction of the initial one


@dataclasses.dataclass(frozen=True)
class Family:
    """A source photograph: a square crop ``(x0, y0, side)`` (pixels) of an image in a wheel."""

    loader: str  # "skimage.<function>" or "plenoptic.<function>"
    x0: int
    y0: int
    side: int
    about: str


FAMILIES: dict[str, Family] = {
    "brick": Family("skimage.brick", 0, 0, 512, "brick wall"),
    "grass": Family("skimage.grass", 0, 0, 512, "grass"),
    "gravel": Family("skimage.gravel", 0, 0, 512, "gravel"),
    "reptile": Family("plenoptic.reptile_skin", 0, 0, 256, "reptile skin"),
    "tissue": Family("skimage.immunohistochemistry", 80, 180, 256, "stained tissue (stroma and glands)"),
    "stars": Family("skimage.hubble_deep_field", 0, 0, 512, "galaxies of the Hubble deep field"),
}


# --------------------------------------------------------------------------------------------
# source photographs
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _photo(loader: str) -> np.ndarray:
    """The full photograph as a float array in [0, 1], shape (H, W), grayscale."""
    lib, func = loader.split(".")
    try:
        if lib == "skimage":
            import skimage.data
            from skimage.color import rgb2gray

            arr = np.asarray(getattr(skimage.data, func)())
            gray = rgb2gray(arr[..., :3]) if arr.ndim == 3 else arr.astype(np.float64) / 255.0
        else:
            import plenoptic

            gray = getattr(plenoptic.data, func)()[0, 0].numpy().astype(np.float64)
    except Exception as exc:  # a build without its bundled images
        package = "scikit-image" if lib == "skimage" else "plenoptic"
        raise IdsimError(f"cannot load source photo {loader} ({type(exc).__name__}: {exc});"
                         f" reinstall {package} (its images ship inside the wheel)") from None
    return np.ascontiguousarray(gray, dtype=np.float64)


def source_image(family: str, size: int) -> np.ndarray:
    """Family ``family``'s source crop at ``size`` x ``size`` (float32 in [0, 1], Lanczos)."""
    fam = FAMILIES[family]
    photo = _photo(fam.loader)
    crop = photo[fam.y0:fam.y0 + fam.side, fam.x0:fam.x0 + fam.side].astype(np.float32)
    img = Image.fromarray(crop, mode="F").resize((size, size), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def _stream_seed(*parts: object) -> int:
    """A 63-bit seed from any labels (stable across processes, unlike ``hash``)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


# --------------------------------------------------------------------------------------------
# Portilla-Simoncelli synthesis
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SynthesisSettings:
    """Everything besides the photo and the seed that determines a synthesised texture."""

    size: int
    iterations: int
    n_scales: int
    n_orientations: int

    def key_fields(self) -> dict[str, Any]:
        import plenoptic
        import torch

        return {**dataclasses.asdict(self), "spatial_corr_width": SPATIAL_CORR_WIDTH, "lr": LEARNING_RATE,
                "ctf_iters": CTF_ITERS, "init_amplitude": INIT_AMPLITUDE, "optimizer": "adam-amsgrad-cosine",
                "plenoptic": plenoptic.__version__, "torch": torch.__version__.split("+")[0],
                "generator_version": GENERATOR_VERSION}


def ps_model(size: int, n_scales: int, n_orientations: int):
    """plenoptic's Portilla–Simoncelli model for ``size`` x ``size`` images, frozen, in eval mode."""
    import plenoptic as po

    model = po.models.PortillaSimoncelli((size, size), n_scales=n_scales, n_orientations=n_orientations,
                                         spatial_corr_width=SPATIAL_CORR_WIDTH)
    model.eval()
    po.remove_grad(model)
    return model


def initial_image(source: np.ndarray, seed: int, family: str, sample: int):
    """The synthesis starting point: uniform noise around the photo's mean (a (1, 1, H, W) tensor)."""
    import torch

    gen = torch.Generator().manual_seed(_stream_seed("texture_noise", "init", seed, family, sample))
    noise = torch.rand((1, 1) + source.shape, generator=gen, dtype=torch.float32)
    return (noise - 0.5) * INIT_AMPLITUDE + float(source.mean())


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synthesize(source: np.ndarray, init, settings: SynthesisSettings) -> tuple[np.ndarray, dict[str, float]]:
    """Match the PS statistics of ``source`` starting from ``init``.

    Returns the texture (float32 in [0, 1]) and ``{"loss_initial", "loss_final"}`` (the PS loss,
    l2 norm of the statistics difference, at the first and last iteration).
    """
    import plenoptic as po
    import torch

    # images may be asked for inside a caller's inference_mode()/no_grad(): synthesis needs autograd
    with torch.inference_mode(False), torch.enable_grad(), _one_thread(), warnings.catch_warnings(), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # "validating coarse-to-fine...", "loss has converged"
        target = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None, None]
        model = ps_model(settings.size, settings.n_scales, settings.n_orientations)
        met = po.MetamerCTF(target, model, loss_function=po.loss.l2_norm, coarse_to_fine="together")
        met.setup(init, optimizer_kwargs={"lr": LEARNING_RATE, "amsgrad": True},
                  scheduler=torch.optim.lr_scheduler.CosineAnnealingLR,
                  scheduler_kwargs={"T_max": settings.iterations})
        met.synthesize(settings.iterations, change_scale_criterion=None, ctf_iters_to_check=CTF_ITERS,
                       stop_criterion=1e-9)  # always run all iterations (the schedule needs them)
        losses = met.losses
        texture = met.metamer.detach()[0, 0].clamp(0.0, 1.0).numpy().astype(np.float32)
    info = {"loss_initial": float(losses[0]), "loss_final": float(losses[-1])}
    if not np.all(np.isfinite(texture)):
        raise IdsimError("texture synthesis diverged (non-finite pixels);"
                         " try another dataset.seed or more dataset.iterations")
    return texture, info


# --------------------------------------------------------------------------------------------
# disk cache: 16-bit grayscale PNGs, written atomically
# --------------------------------------------------------------------------------------------

_KEY_FIELD = "idsim-texture-key"


def _to_u16(texture: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(texture, 0.0, 1.0) * 65535.0).astype(np.uint16)


def _from_u16(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float32) / np.float32(65535.0)


def write_texture(path: Path, texture: np.ndarray, key: str, info: dict[str, Any]) -> None:
    """Write ``texture`` (float in [0, 1]) as a 16-bit PNG via a temp file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = PngImagePlugin.PngInfo()
    meta.add_text(_KEY_FIELD, key)
    meta.add_text("idsim-texture-info", json.dumps(info, sort_keys=True))
    u16 = _to_u16(texture)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(u16).save(fh, format="PNG", pnginfo=meta)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_texture(path: Path, key: str, size: int) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The cached texture (float32 in [0, 1]) and its synthesis info, or ``None`` when the file is
    missing, truncated, corrupt, of another size or written for another key."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as img:
            img.load()  # decodes every chunk: truncation and CRC errors surface here
            text = dict(getattr(img, "text", {}))
            arr = np.asarray(img)
        if text.get(_KEY_FIELD) != key or arr.shape != (size, size) or arr.dtype != np.uint16:
            raise ValueError(f"unexpected content (key {text.get(_KEY_FIELD)!r}, shape {arr.shape}, {arr.dtype})")
        info = json.loads(text.get("idsim-texture-info", "{}"))
    except Exception as exc:  # any unreadable file is re-synthesised
        log.warning("texture cache file %s is unreadable (%s: %s); synthesising it again",
                    path, type(exc).__name__, exc)
        return None
    return _from_u16(arr), info


# --------------------------------------------------------------------------------------------
# spectrally matched noise and the aperture
# --------------------------------------------------------------------------------------------

def matched_noise(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise with ``texture``'s Fourier amplitude spectrum (DC removed) and random phase.

    The phases are those of white Gaussian noise, whose spectrum is conjugate-symmetric, so the
    inverse transform is real and every amplitude is kept exactly.
    """
    amp = np.abs(np.fft.fft2(texture - texture.mean()))
    phase = np.angle(np.fft.fft2(rng.standard_normal(texture.shape)))
    return np.fft.ifft2(amp * np.exp(1j * phase)).real


def pair_from_texture(texture: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(texture, noise) around mid gray with one common contrast gain that keeps both in [0, 1]."""
    t = texture.astype(np.float64)
    x = t - t.mean()
    n = matched_noise(t, rng)
    peak = max(float(np.abs(x).max()), float(np.abs(n).max()), 1e-12)
    gain = min(1.0, (min(GRAY, 1.0 - GRAY) - 1e-3) / peak)
    return GRAY + gain * x, GRAY + gain * n


@functools.lru_cache(maxsize=8)
def aperture_mask(size: int) -> np.ndarray:
    """Circular window: 1 inside, a raised-cosine edge of width ``size/16`` ending at radius
    ``size/2``, and exactly 0 at and beyond that radius (pixel centres)."""
    c = np.arange(size) + 0.5 - size / 2.0
    r = np.hypot(c[None, :], c[:, None])
    outer = size / 2.0
    edge = max(2.0, size / 16.0)
    t = np.clip((outer - r) / edge, 0.0, 1.0)
    mask = 0.5 - 0.5 * np.cos(np.pi * t)
    mask[r >= outer] = 0.0
    mask.setflags(write=False)
    return mask


# --------------------------------------------------------------------------------------------
# the probe set
# --------------------------------------------------------------------------------------------

def smallest_size(n_scales: int) -> int:
    """The smallest image side the PS model takes at ``n_scales``: a multiple of ``2**n_scales`` that
    holds the autocorrelation window at the coarsest scale."""
    return 2 ** n_scales * SPATIAL_CORR_WIDTH


class TextureNoiseProbeSet(ProbeSet):
    """PS textures and spectrally matched noise of several families, in a circular aperture.

    Build it from :class:`TextureNoiseOptions` (which checks the values); the arguments are its
    fields (``n_images`` caps the set afterwards).

    Args:
        seed: with the other parameters it fixes every pixel.
        size: image side in pixels; a multiple of ``2**n_scales`` and at least ``7 * 2**n_scales``.
        families: family names (``None``: all of :data:`FAMILIES`).
        n_samples: textures synthesised per family (each with its own starting noise).
        aperture: show images in a soft circular aperture on mean gray (else the full square).
        iterations: optimiser iterations per texture.
        n_scales, n_orientations: the PS model's pyramid scales and orientations.
        cache_dir: synthesised textures go to ``<cache_dir>/textures``; ``None`` keeps them in
            memory only.
    """

    name = "texture_noise"
    kinds = KINDS

    def __init__(self, *, seed: int, size: int, families: Sequence[str] | None, n_samples: int, aperture: bool,
                 iterations: int, n_scales: int, n_orientations: int, cache_dir: str | os.PathLike | None):
        self.seed, self.size, self.n_samples = int(seed), int(size), int(n_samples)
        self.families = tuple(FAMILIES) if families is None else tuple(str(f) for f in families)
        self.aperture, self.iterations = bool(aperture), int(iterations)
        self.n_scales, self.n_orientations = int(n_scales), int(n_orientations)
        self.cache_dir = None if cache_dir in (None, "") else Path(cache_dir).expanduser()
        self.settings = SynthesisSettings(self.size, self.iterations, self.n_scales, self.n_orientations)
        self._pairs: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    # -- layout ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.families) * self.n_samples * len(KINDS)

    def locate(self, i: int) -> tuple[str, int, str]:
        """``(family, sample, kind)`` of image ``i``: i = (sample * n_families + family) * 2 + kind."""
        i = self._index(i)
        rest, k = divmod(i, len(KINDS))
        sample, f = divmod(rest, len(self.families))
        return self.families[f], sample, KINDS[k]

    def kind(self, i: int) -> str:
        """``"texture"`` or ``"noise"``."""
        return self.locate(i)[2]

    def label(self, i: int) -> str:
        return self.locate(i)[0]

    def stimulus_id(self, i: int) -> str:
        family, sample, kind = self.locate(i)
        return f"texture_noise-{self.seed}-{family}-{sample:02d}-{kind}"

    # -- pixels ------------------------------------------------------------------------------

    def texture_key(self, family: str, sample: int) -> str:
        """Hash of everything that determines one synthesised texture (its cache file name)."""
        fields = {"family": family, "source": _digest(source_image(family, self.size)), "seed": self.seed,
                  "sample": sample, **self.settings.key_fields()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]

    def texture_path(self, family: str, sample: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / "textures" / f"{family}-{self.texture_key(family, sample)}.png"

    def texture(self, family: str, sample: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The synthesised texture (float32 in [0, 1], before contrast gain) and its synthesis info,
        read from the disk cache or synthesised (and cached)."""
        path = self.texture_path(family, sample)
        key = self.texture_key(family, sample)
        if path is not None:
            cached = read_texture(path, key, self.size)
            if cached is not None:
                return cached
        source = source_image(family, self.size)
        log.info("synthesising %s texture %d (%d px, %d iterations)", family, sample, self.size, self.iterations)
        texture, info = synthesize(source, initial_image(source, self.seed, family, sample), self.settings)
        if info["loss_final"] > CONVERGED_RATIO * info["loss_initial"]:
            log.warning("%s texture %d: PS loss only fell from %.3g to %.3g; consider more dataset.iterations",
                        family, sample, info["loss_initial"], info["loss_final"])
        if path is not None:
            try:
                write_texture(path, texture, key, info)
            except OSError as exc:
                log.warning("cannot write texture cache %s (%s); continuing without it", path, exc)
        return _from_u16(_to_u16(texture)), info  # exactly what a later run reads back

    def pair(self, family: str, sample: int) -> tuple[np.ndarray, np.ndarray]:
        """(texture, noise) as float64 arrays in [0, 1] with mean mid gray, before the aperture."""
        key = (family, sample)
        if key not in self._pairs:
            texture, _ = self.texture(family, sample)
            rng = np.random.default_rng(_stream_seed("texture_noise", "phase", self.seed, family, sample))
            self._pairs[key] = pair_from_texture(texture, rng)
        return self._pairs[key]

    def image(self, i: int) -> Image.Image:
        family, sample, kind = self.locate(i)
        arr = self.pair(family, sample)[KINDS.index(kind)]
        if self.aperture:
            mask = aperture_mask(self.size)
            arr = GRAY + mask * (arr - GRAY)
        u8 = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        if self.aperture:
            u8[aperture_mask(self.size) == 0.0] = GRAY_U8
        return Image.fromarray(u8, mode="L").convert("RGB")

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "size": self.size,
            "families": list(self.families),
            "sources": {f: _digest(source_image(f, self.size)) for f in self.families},
            "n_samples": self.n_samples,
            "aperture": self.aperture,
            **{k: v for k, v in self.settings.key_fields().items() if k != "size"},
        }

    def __repr__(self) -> str:
        return (f"TextureNoiseProbeSet(seed={self.seed}, size={self.size}, families={list(self.families)},"
                f" n_samples={self.n_samples}, aperture={self.aperture}, iterations={self.iterations},"
                f" n_scales={self.n_scales}, n_orientations={self.n_orientations}, cache_dir={self.cache_dir})")


@dataclasses.dataclass
class TextureNoiseOptions(ProbeSetOptions):
    """``dataset=texture_noise``: PS textures and spectrally matched noise (conf/dataset/texture_noise.yaml)."""

    name: str = "texture_noise"
    # null: all (families x n_samples x 2 = 48 by default); N: the first N
    n_images: Optional[int] = opt(None, "null (all images) or a positive integer (the first N)",
                                  optional(int_at_least(1)))
    # with the other keys, fixes every pixel (synthesis start noise, noise phase); the YAML follows the run's `seed`
    seed: int = opt(0, "an integer >= 0 (synthesis starting noise and noise phases)", int_at_least(0))
    # pixels; a multiple of 2**n_scales and >= 7 * 2**n_scales (one texture: ~30 s at 128 px, ~60 s at 256);
    # checked against n_scales in check()
    size: int = opt(128, "an integer multiple of 2**n_scales and >= 7 * 2**n_scales, e.g. 128", int_at_least(1))
    # null: all of brick, grass, gravel, reptile, tissue, stars; or a list of them
    families: Optional[List[str]] = opt(None, f"null (all) or a non-empty list of distinct texture families from:"
                                              f" {', '.join(FAMILIES)}",
                                        optional(distinct_names(tuple(FAMILIES))))
    # textures per family (each from its own seeded starting noise)
    n_samples: int = opt(4, "a positive integer (textures per family)", int_at_least(1))
    # soft-edged circular aperture on mean gray; false: the full square
    aperture: bool = True
    # optimiser steps per texture (Adam, cosine schedule; loss falls ~90%)
    iterations: int = opt(300, "a positive integer (optimiser steps per texture)", int_at_least(1))
    # PS model pyramid scales
    n_scales: int = opt(4, "a positive integer (Portilla-Simoncelli pyramid scales, e.g. 4)", int_at_least(1))
    # PS model orientations
    n_orientations: int = opt(4, "a positive integer (Portilla-Simoncelli orientations, e.g. 4)", int_at_least(1))
    # textures are cached in <cache_dir>/textures/*.png (16-bit); null: memory only; the YAML uses the run's cache.dir
    cache_dir: Optional[str] = opt(valid="a folder path, or null (textures in memory only)",
                                   factory=idsim_cache_dir)

    def check(self, key: str) -> None:
        step, smallest = 2 ** self.n_scales, smallest_size(self.n_scales)
        if self.size < smallest or self.size % step:
            fail(f"{key}.size", self.size, f"an integer multiple of 2**n_scales={step} and >= {smallest} for"
                                           f" n_scales={self.n_scales} (Portilla-Simoncelli pyramid), e.g."
                                           f" {max(smallest, 128)}")

    def build(self) -> ProbeSet:
        probe = TextureNoiseProbeSet(seed=self.seed, size=self.size, families=self.families, n_samples=self.n_samples,
                                     aperture=self.aperture, iterations=self.iterations, n_scales=self.n_scales,
                                     n_orientations=self.n_orientations, cache_dir=self.cache_dir)
        return cap(probe, self.n_images)


__all__ = ["TextureNoiseProbeSet", "TextureNoiseOptions", "FAMILIES", "KINDS", "source_image", "synthesize",
           "matched_noise", "aperture_mask", "ps_model", "initial_image"]
