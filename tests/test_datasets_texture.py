"""Tests of the Portilla–Simoncelli texture / spectrally matched noise set (idsim.datasets.texture_noise).

Synthesis is kept tiny (32 px, 2 pyramid scales, a few dozen iterations, a temporary cache) so the
file runs in well under a minute; the defaults (128 px, 4 scales, 300 iterations) are exercised by
the slow end-to-end test at the bottom.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import idsim.datasets.texture_noise as tn
from idsim.datasets import load_probe_set
from idsim.datasets.base import ProbeSet
from idsim.errors import IdsimError

from conftest import TINY

SMALL = dict(size=32, n_scales=2, iterations=40)


@pytest.fixture
def count_synth(monkeypatch):
    """Counts calls of the PS synthesis (the real one still runs)."""
    calls: list[tuple] = []
    real = tn.synthesize

    def counting(source, init, settings):
        calls.append((source.shape, settings))
        return real(source, init, settings)

    monkeypatch.setattr(tn, "synthesize", counting)
    return calls


def small(tmp_path, **kw) -> tn.TextureNoiseProbeSet:
    """The set with its defaults (TextureNoiseOptions), made small, and any options in ``kw``."""
    params = {**SMALL, "families": ["brick", "gravel"], "n_samples": 2, "cache_dir": str(tmp_path / "cache"), **kw}
    ps = load_probe_set(tn.TextureNoiseOptions(**params))
    assert isinstance(ps, tn.TextureNoiseProbeSet)
    return ps


def pixels(ps: ProbeSet, i: int) -> np.ndarray:
    return np.asarray(ps.image(i))


# -- layout (no synthesis) --------------------------------------------------------------------

def test_layout_interleaves_sample_family_kind(tmp_path):
    ps = small(tmp_path, families=["grass", "brick", "stars"], n_samples=3)
    assert isinstance(ps, ProbeSet) and ps.name == "texture_noise"
    assert len(ps) == 3 * 3 * 2
    first = [ps.locate(i) for i in range(6)]
    assert first == [("grass", 0, "texture"), ("grass", 0, "noise"), ("brick", 0, "texture"),
                     ("brick", 0, "noise"), ("stars", 0, "texture"), ("stars", 0, "noise")]
    assert ps.locate(17) == ("stars", 2, "noise")
    assert [ps.label(i) for i in range(6)] == ["grass", "grass", "brick", "brick", "stars", "stars"]
    assert [ps.kind(i) for i in range(4)] == ["texture", "noise", "texture", "noise"]
    ids = [ps.stimulus_id(i) for i in range(len(ps))]
    assert len(set(ids)) == len(ids)
    assert ps.stimulus_id(3) == "texture_noise-0-brick-00-noise"
    with pytest.raises(IndexError):
        ps.locate(len(ps))


def test_defaults_and_config_cover_all_families():
    ps = load_probe_set({"name": "texture_noise", "cache_dir": None})
    assert (ps.size, ps.n_samples, ps.iterations, ps.aperture) == (128, 4, 300, True)
    assert (ps.seed, ps.n_scales, ps.n_orientations, ps.cache_dir) == (0, 4, 4, None)
    assert ps.families == tuple(tn.FAMILIES) and len(tn.FAMILIES) >= 5
    assert len(ps) == len(tn.FAMILIES) * 4 * 2


@pytest.mark.parametrize("family", list(tn.FAMILIES))
def test_every_source_photo_loads_offline_and_is_textured(family):
    src = tn.source_image(family, 64)
    assert src.shape == (64, 64) and src.dtype == np.float32
    assert 0.0 <= src.min() and src.max() <= 1.0 and src.std() > 0.03


FAMILIES_VALID = "valid: null (all) or a non-empty list of distinct texture families from: brick, grass, gravel"


@pytest.mark.parametrize("kw, fragment", [
    ({"families": ["brick", "velvet"]}, f"dataset.families=['brick','velvet']; {FAMILIES_VALID}"),
    ({"families": "brick"}, "dataset.families=brick"),
    ({"families": []}, f"dataset.families=[]; {FAMILIES_VALID}"),
    ({"families": ["brick", "brick"]}, f"dataset.families=['brick','brick']; {FAMILIES_VALID}"),
    ({"size": 100}, "dataset.size=100; valid: an integer multiple of 2**n_scales=16 and >= 112 for n_scales=4"),
    ({"size": 64}, "dataset.size=64; valid: an integer multiple of 2**n_scales=16 and >= 112"),
    ({"size": 60, "n_scales": 3}, "dataset.size=60; valid: an integer multiple of 2**n_scales=8 and >= 56 for"
                                  " n_scales=3"),
    ({"size": "big"}, "dataset.size='big': wrong type; valid: an integer multiple of 2**n_scales"),
    ({"n_samples": 0}, "dataset.n_samples=0; valid: a positive integer"),
    ({"iterations": -5}, "dataset.iterations=-5; valid: a positive integer"),
    ({"n_scales": 0}, "dataset.n_scales=0; valid: a positive integer"),
    ({"aperture": "sometimes"}, "dataset.aperture='sometimes'"),
    ({"seed": -1}, "dataset.seed=-1; valid: an integer >= 0"),
    ({"n_images": 0}, "dataset.n_images=0; valid: null (all images) or a positive integer"),
])
def test_bad_options_give_one_line_errors(kw, fragment):
    with pytest.raises(IdsimError) as err:
        load_probe_set({"name": "texture_noise", "cache_dir": None, **kw})
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_size_is_checked_against_n_scales():
    """The cross-field check (TextureNoiseOptions.check) passes what the PS pyramid takes."""
    for size, n_scales in ((56, 3), (64, 3), (112, 4), (32, 2), (28, 2)):
        tn.TextureNoiseOptions(size=size, n_scales=n_scales).validate("dataset")
    assert tn.smallest_size(4) == 112 and tn.smallest_size(2) == 28


def test_unknown_option_and_too_many_images_are_reported():
    with pytest.raises(IdsimError, match="unknown config key 'dataset.colour'; valid keys of dataset: name,"):
        load_probe_set({"name": "texture_noise", "cache_dir": None, "colour": True})
    with pytest.raises(IdsimError, match="has only 48 images"):
        load_probe_set({"name": "texture_noise", "cache_dir": None, "n_images": 49})


# -- synthesis, cache, determinism ------------------------------------------------------------

def test_same_seed_same_pixels_even_after_cache_is_deleted(tmp_path, count_synth):
    a = small(tmp_path, n_samples=1)
    first = [pixels(a, i) for i in range(4)]
    assert len(count_synth) == 2
    files = sorted((tmp_path / "cache" / "textures").glob("*.png"))
    assert len(files) == 2
    for f in files:
        f.unlink()
    b = small(tmp_path, n_samples=1)
    again = [pixels(b, i) for i in range(4)]
    assert len(count_synth) == 4  # really synthesised afresh
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    memory_only = small(tmp_path, n_samples=1, cache_dir=None)
    np.testing.assert_array_equal(pixels(memory_only, 0), first[0])
    other_seed = small(tmp_path, n_samples=1, seed=1)
    assert not np.array_equal(pixels(other_seed, 0), first[0])


def test_samples_differ_and_prefix_does_not_depend_on_n_images(tmp_path, count_synth):
    root = {"name": "texture_noise", **SMALL, "families": ["gravel"], "n_samples": 2, "cache_dir": str(tmp_path)}
    two = load_probe_set({**root, "n_images": 2})
    t0, n0 = pixels(two, 0), pixels(two, 1)
    assert len(count_synth) == 1  # only the one texture the two images need
    four = load_probe_set({**root, "n_images": 4})
    np.testing.assert_array_equal(pixels(four, 0), t0)
    np.testing.assert_array_equal(pixels(four, 1), n0)
    assert not np.array_equal(pixels(four, 2), t0)  # sample 1: another starting noise
    assert len(count_synth) == 2


def test_cache_is_reused_by_a_new_set(tmp_path, count_synth):
    small(tmp_path).image(0)
    assert len(count_synth) == 1
    again = small(tmp_path)
    again.image(0), again.image(1)
    assert len(count_synth) == 1
    names = [p.name for p in (tmp_path / "cache" / "textures").iterdir()]
    assert len(names) == 1 and names[0].startswith("brick-") and names[0].endswith(".png")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_key"])
def test_damaged_cache_file_is_resynthesised(tmp_path, count_synth, damage):
    ps = small(tmp_path)
    ref = pixels(ps, 0)
    path = ps.texture_path("brick", 0)
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a png at all")
    else:  # a valid PNG written for another texture
        other = small(tmp_path, seed=7)
        other.image(0)
        os.replace(other.texture_path("brick", 0), path)
    assert tn.read_texture(path, ps.texture_key("brick", 0), ps.settings.size) is None
    calls = len(count_synth)
    np.testing.assert_array_equal(pixels(small(tmp_path), 0), ref)
    assert len(count_synth) == calls + 1
    assert tn.read_texture(path, ps.texture_key("brick", 0), ps.settings.size) is not None  # repaired


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *a, **k):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(tn.Image.Image, "save", broken_save)
    path = tmp_path / "textures" / "x.png"
    with pytest.raises(OSError):
        tn.write_texture(path, np.zeros((32, 32)), "k", {})
    assert list(path.parent.iterdir()) == []


def test_key_changes_with_everything_that_determines_the_texture(tmp_path):
    base = small(tmp_path)
    key = base.texture_key("brick", 0)
    assert small(tmp_path).texture_key("brick", 0) == key
    variants = [base.texture_key("gravel", 0), base.texture_key("brick", 1)]
    variants += [small(tmp_path, **kw).texture_key("brick", 0)
                 for kw in ({"seed": 3}, {"iterations": 41}, {"size": 64}, {"n_orientations": 3})]
    assert key not in variants and len(set(variants)) == len(variants)
    assert small(tmp_path, aperture=False).texture_key("brick", 0) == key  # the aperture is applied afterwards


def test_synthesis_matches_ps_statistics_better_than_its_start(tmp_path):
    ps = small(tmp_path, iterations=60)
    texture, info = ps.texture("gravel", 0)
    assert info["loss_final"] < 0.5 * info["loss_initial"]
    source = tn.source_image("gravel", ps.size)
    init = tn.initial_image(source, ps.seed, "gravel", 0)
    model = tn.ps_model(ps.size, ps.n_scales, ps.n_orientations)

    def stats(x):
        import torch

        return model(torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(1, 1, ps.size, ps.size)).flatten()

    target = stats(source)
    d_texture = float((stats(texture) - target).norm())
    d_init = float((stats(init) - target).norm())
    assert d_texture < 0.5 * d_init


# -- noise and aperture -----------------------------------------------------------------------

def test_noise_has_the_texture_amplitude_spectrum_but_not_its_phase(tmp_path):
    ps = small(tmp_path, aperture=False)
    tex, noise = ps.pair("brick", 0)
    assert abs(tex.mean() - tn.GRAY) < 1e-9 and abs(noise.mean() - tn.GRAY) < 1e-9
    assert 0.0 <= min(tex.min(), noise.min()) and max(tex.max(), noise.max()) <= 1.0
    a_tex = np.abs(np.fft.fft2(tex - tex.mean()))
    a_noise = np.abs(np.fft.fft2(noise - noise.mean()))
    np.testing.assert_allclose(a_noise, a_tex, rtol=1e-6, atol=1e-9 * a_tex.max())
    assert abs(np.corrcoef(tex.ravel(), noise.ravel())[0, 1]) < 0.3  # a different image
    # the 8-bit images still match closely (quantisation only)
    img_tex, img_noise = (pixels(ps, i)[:, :, 0].astype(float) for i in (0, 1))
    s_tex = np.abs(np.fft.fft2(img_tex - img_tex.mean()))
    s_noise = np.abs(np.fft.fft2(img_noise - img_noise.mean()))
    assert np.abs(s_noise - s_tex).sum() / s_tex.sum() < 0.05
    # a white-noise stand-in would not match: the test can fail
    white = np.random.default_rng(0).standard_normal(tex.shape) * noise.std()
    s_white = np.abs(np.fft.fft2(white))
    assert np.abs(s_white - a_tex).sum() / a_tex.sum() > 0.3


def test_aperture_is_exactly_mean_gray_outside_the_radius(tmp_path):
    ps = small(tmp_path)
    size = ps.size
    c = np.arange(size) + 0.5 - size / 2
    outside = np.hypot(c[None, :], c[:, None]) >= size / 2
    for i in (0, 1):
        img = pixels(ps, i)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()  # gray as RGB
        assert (img[outside] == tn.GRAY_U8).all()
        centre = img[size // 4: 3 * size // 4, size // 4: 3 * size // 4, 0]
        assert centre.std() > 5  # the texture shows inside
    bare = pixels(small(tmp_path, aperture=False), 0)
    assert not (bare[outside] == tn.GRAY_U8).all()
    mask = tn.aperture_mask(size)
    assert mask.max() == 1.0 and (mask[outside] == 0).all() and ((mask > 0) & (mask < 1)).any()  # soft edge


# -- through the pipeline ---------------------------------------------------------------------

def test_runs_through_run_experiment(compose_cfg, tmp_path):
    from idsim.experiment import run_experiment

    cfg = compose_cfg(["dataset=texture_noise", "dataset.size=32", "dataset.n_scales=2", "dataset.iterations=10",
                       "dataset.families=[brick,gravel]", "dataset.n_samples=3", f"cache.dir={tmp_path / 'cache'}",
                       "target=alexnet", "sources=[alexnet]", "target.layers=[features.1]",
                       "sources.alexnet.layers=[features.1,features.4]", *TINY])
    res = run_experiment(cfg, tmp_path / "out")
    assert len(list((tmp_path / "cache" / "textures").glob("*.png"))) == 6
    assert (res.scores.dataset == "texture_noise").all() and (res.scores.n_images == 12).all()
    assert res.scores.score.between(0, 1).all() and len(res.scores) == 2


@pytest.mark.slow
def test_default_settings_synthesise_a_converged_texture(tmp_path):
    ps = tn.TextureNoiseOptions(families=["reptile"], n_samples=1, cache_dir=str(tmp_path)).build()
    texture, info = ps.texture("reptile", 0)
    assert info["loss_final"] < 0.25 * info["loss_initial"]
    assert texture.shape == (128, 128)
