"""Tests of the generated probe sets ``natural`` (idsim.datasets.natural) and
``synthetic_objects`` (idsim.datasets.synthetic_objects)."""
from __future__ import annotations

import collections
import hashlib
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from idsim.datasets import load_probe_set
from idsim.datasets.base import ProbeSet
from idsim.datasets.natural import PHOTOS, NaturalOptions, NaturalProbeSet, natural_crop, photo
from idsim.datasets.synthetic_objects import (
    CATEGORIES, Part, Pose, SolidObject, SyntheticObjectsOptions, SyntheticObjectsProbeSet, objects, render,
)
from idsim.errors import IdsimError

SIZE = 64  # small images keep the suite fast; both generators are size-agnostic
ROOT = pathlib.Path(__file__).resolve().parents[1]


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int16)


def digest(ps: ProbeSet) -> str:
    h = hashlib.sha256()
    for img in ps:
        h.update(img.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# shared properties of both sets
# ---------------------------------------------------------------------------------------------

def natural(**kw) -> NaturalProbeSet:
    """The set with its defaults (NaturalOptions) but small, and any options in ``kw``."""
    ps = load_probe_set(NaturalOptions(**{"n_images": 12, "size": SIZE, **kw}))
    assert isinstance(ps, NaturalProbeSet)
    return ps


def objects_set(**kw) -> SyntheticObjectsProbeSet:
    ps = load_probe_set(SyntheticObjectsOptions(**{"n_images": 16, "size": SIZE, **kw}))
    assert isinstance(ps, SyntheticObjectsProbeSet)
    return ps


MAKERS = {"natural": natural, "synthetic_objects": objects_set}


@pytest.mark.parametrize("name", MAKERS)
def test_images_are_rgb_uint8_of_requested_size(name):
    for size in (16, 37, SIZE):
        ps = MAKERS[name](n_images=9, size=size)
        assert isinstance(ps, ProbeSet) and ps.name == name and len(ps) == 9
        for img in ps:
            assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (size, size)
            assert np.asarray(img).dtype == np.uint8


@pytest.mark.parametrize("name", MAKERS)
def test_same_seed_same_pixels_other_seed_other_pixels(name):
    a, b, c = MAKERS[name](seed=3), MAKERS[name](seed=3), MAKERS[name](seed=4)
    for i in range(len(a)):
        assert np.array_equal(px(a.image(i)), px(b.image(i)))
        assert np.array_equal(px(a.image(i)), px(a.image(i)))
        assert np.abs(px(a.image(i)) - px(c.image(i))).mean() > 3.0, i
    assert a.identity() == b.identity() != c.identity()


@pytest.mark.parametrize("name", MAKERS)
def test_image_i_does_not_depend_on_n_images(name):
    small, large = MAKERS[name](n_images=5, seed=2), MAKERS[name](n_images=40, seed=2)
    for i in range(5):
        assert np.array_equal(px(small.image(i)), px(large.image(i)))
        assert small.label(i) == large.label(i) and small.stimulus_id(i) == large.stimulus_id(i)
    capped = load_probe_set({"name": name, "n_images": 5, "seed": 2, "size": SIZE})
    assert [capped.stimulus_id(i) for i in range(5)] == [small.stimulus_id(i) for i in range(5)]


@pytest.mark.parametrize("name", MAKERS)
def test_images_differ_from_each_other(name):
    ps = MAKERS[name](n_images=16)
    imgs = [px(img) for img in ps]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 2.0, (i, j)


@pytest.mark.parametrize("name", MAKERS)
def test_stimulus_ids_unique_and_labels_in_ids(name):
    ps = MAKERS[name](n_images=24, seed=7)
    ids = [ps.stimulus_id(i) for i in range(len(ps))]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"{name}-7-") and ps.label(k) in i for k, i in enumerate(ids))


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("i", [-1, 12, 100])
def test_out_of_range_index_raises_index_error(name, i):
    ps = MAKERS[name](n_images=12)
    for get in (ps.image, ps.label, ps.stimulus_id, ps.__getitem__):
        with pytest.raises(IndexError):
            get(i)


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("natural", {"n_images": 0}, "dataset.n_images=0; valid: a positive integer"),
        ("natural", {"size": 8}, "dataset.size=8; valid: an integer >= 16 (pixels)"),
        ("natural", {"size": 64.0}, "dataset.size=64.0: wrong type; valid: an integer >= 16"),
        ("natural", {"seed": -1}, "dataset.seed=-1; valid: an integer >= 0"),
        ("natural", {"min_crop_frac": 0}, "dataset.min_crop_frac=0.0; valid: a number in (0, 1]"),
        ("natural", {"min_crop_frac": 1.5}, "dataset.min_crop_frac=1.5; valid: a number in (0, 1]"),
        ("natural", {"min_crop_frac": "big"}, "dataset.min_crop_frac='big': wrong type; valid: a number in (0, 1]"),
        ("natural", {"flip": "maybe"}, "dataset.flip='maybe'"),
        ("natural", {"photos": ["astronaut", "lena"]},
         "dataset.photos=['astronaut','lena']; valid: null (all photos) or a non-empty list of distinct photo names"
         " from: astronaut,"),
        ("natural", {"photos": []}, "dataset.photos=[]; valid: null (all photos) or a non-empty list"),
        ("natural", {"photos": "astronaut"}, "dataset.photos=astronaut"),
        ("natural", {"photos": ["coins", "coins"]}, "dataset.photos=['coins','coins']; valid: null (all photos) or a"
                                                    " non-empty list of distinct"),
        ("natural", {"colour": True}, "unknown config key 'dataset.colour'; valid keys of dataset: name, n_images,"
                                      " seed, size, min_crop_frac, flip, photos"),
        ("synthetic_objects", {"n_images": 0}, "dataset.n_images=0; valid: a positive integer"),
        ("synthetic_objects", {"n_images": -2}, "dataset.n_images=-2; valid: a positive integer"),
        ("synthetic_objects", {"size": 15}, "dataset.size=15; valid: an integer >= 16 (pixels)"),
        ("synthetic_objects", {"seed": "zero"}, "dataset.seed='zero': wrong type; valid: an integer >= 0"),
        ("synthetic_objects", {"variation": 4}, "dataset.variation=4; valid: 0 (canonical pose), 3, 6 (the widest) or"
                                                " mixed"),
        ("synthetic_objects", {"variation": "high"}, "dataset.variation='high'; valid: 0 (canonical pose), 3, 6"),
        ("synthetic_objects", {"variation": True}, "dataset.variation=true; valid: 0 (canonical pose), 3, 6"),
        ("synthetic_objects", {"background": "black"}, "dataset.background='black'; valid: natural (crops of"
                                                       " scikit-image's photographs) or gray"),
        ("synthetic_objects", {"min_crop_frac": 0.5}, "unknown config key 'dataset.min_crop_frac'; valid keys of"
                                                      " dataset: name, n_images, seed, size, variation, background"),
    ],
)
def test_bad_parameters_raise_one_line_idsim_error(name, params, fragment):
    with pytest.raises(IdsimError) as exc:
        load_probe_set({"name": name, **params})
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_configs_compose_and_load(compose_cfg):
    from omegaconf import OmegaConf

    for name, n in (("natural", 100), ("synthetic_objects", 160)):
        cfg = compose_cfg([f"dataset={name}", "seed=5"])
        for node in (cfg.dataset, OmegaConf.to_container(cfg.dataset, resolve=True)):  # the node, or plain values
            probe = load_probe_set(node)
            assert probe.name == name and len(probe) == n and probe.identity()["seed"] == 5  # seed: ${seed}
    cfg = compose_cfg(["dataset=synthetic_objects", "dataset.variation=mixed", "dataset.background=gray"])
    probe = load_probe_set(cfg.dataset)
    assert probe.identity()["variation"] == "mixed" and probe.identity()["background"] == "gray"


def test_no_network_needed_and_pixels_identical_across_processes():
    """Both sets build from what is installed: a fresh process with sockets disabled renders
    the same pixels as this one."""
    code = (
        "import socket, hashlib\n"
        "def refuse(*a, **k): raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from idsim.datasets import load_probe_set\n"
        f"for cfg in ({{'name': 'natural', 'n_images': 11, 'size': {SIZE}}},"
        f" {{'name': 'synthetic_objects', 'n_images': 8, 'size': {SIZE}}}):\n"
        "    ps = load_probe_set(cfg)\n"
        "    h = hashlib.sha256()\n"
        "    for img in ps: h.update(img.tobytes())\n"
        "    print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [digest(natural(n_images=11)), digest(objects_set(n_images=8))]


# ---------------------------------------------------------------------------------------------
# natural
# ---------------------------------------------------------------------------------------------

def test_natural_defaults_and_labels_cycle_through_the_photos():
    ps = NaturalOptions().build()
    assert (len(ps), ps.seed, ps.size, ps.flip, ps.photos, ps.min_crop_frac) == (100, 0, 256, True, PHOTOS, 0.4)
    assert ps.image(0).size == (256, 256)
    assert len(PHOTOS) >= 10
    ps = natural(n_images=3 * len(PHOTOS))
    counts = collections.Counter(ps.labels)
    assert set(counts) == set(PHOTOS) and set(counts.values()) == {3}
    assert [ps.label(i) for i in range(len(PHOTOS))] == list(PHOTOS)
    sub = natural(photos=["coffee", "rocket"], n_images=4)
    assert sub.labels == ["coffee", "rocket", "coffee", "rocket"]


def _reference_resize(arr: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return resize(arr, (size, size), anti_aliasing=True, preserve_range=True)


def test_full_crop_of_a_square_photo_is_the_resized_photo():
    import skimage.data

    from skimage.transform import downscale_local_mean

    ps = natural(photos=["astronaut", "camera"], min_crop_frac=1.0, flip=False, n_images=2)
    k = 512 // SIZE  # both photos are 512 x 512: compare with the exact area average
    ref = downscale_local_mean(skimage.data.astronaut().astype(float), (k, k, 1))
    err = np.abs(px(ps.image(0)) - ref).mean()
    assert err < 4.0, err
    assert np.abs(px(ps.image(1)) - ref).mean() > 30.0  # a different photo is far away
    cam = downscale_local_mean(skimage.data.camera().astype(float), (k, k))
    assert np.abs(px(ps.image(1)) - cam[:, :, None]).mean() < 4.0


def test_crops_come_from_the_photo_where_crop_says():
    import skimage.data

    ps = natural(photos=["chelsea"], n_images=6, min_crop_frac=0.5)
    arr = skimage.data.chelsea()
    for i in range(len(ps)):
        name, x0, y0, side, flipped = ps.crop(i)
        assert name == "chelsea" and 0.5 * 300 - 1e-6 <= side <= 300 + 1e-6
        assert 0 <= x0 <= 451 - side + 1e-6 and 0 <= y0 <= 300 - side + 1e-6
        x, y, s = round(x0), round(y0), round(side)
        ref = _reference_resize(arr[y:y + s, x:x + s], SIZE)
        got = px(ps.image(i))
        if flipped:
            got = got[:, ::-1]
        assert np.abs(got - ref).mean() < 6.0, i


def test_flip_mirrors_and_can_be_turned_off():
    flipped = natural(photos=["astronaut"], min_crop_frac=1.0, n_images=12)
    plain = natural(photos=["astronaut"], min_crop_frac=1.0, n_images=1, flip=False).image(0)
    flags = [flipped.crop(i)[4] for i in range(12)]
    assert any(flags) and not all(flags)
    for i, f in enumerate(flags):
        expected = np.asarray(plain)[:, ::-1] if f else np.asarray(plain)
        assert np.array_equal(np.asarray(flipped.image(i)), expected)
    assert not any(natural(n_images=12, flip=False).crop(i)[4] for i in range(12))


def test_grayscale_photos_become_three_equal_channels():
    for name in ("camera", "coins", "moon"):
        img = np.asarray(photo(name))
        assert img.ndim == 3 and img.shape[2] == 3
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert np.abs(np.asarray(photo("chelsea"), np.int16)[..., 0] - np.asarray(photo("chelsea"))[..., 2]).max() > 50


def test_natural_crop_helper_is_deterministic_and_varied():
    a = natural_crop(np.random.default_rng(1), 48)
    b = natural_crop(np.random.default_rng(1), 48)
    c = natural_crop(np.random.default_rng(2), 48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 5.0


def test_natural_identity_tracks_every_pixel_parameter():
    base = natural().identity()
    assert base["photos_digest"] and len(base["photos_digest"]) == 16
    for kw in ({"size": 32}, {"min_crop_frac": 0.9}, {"flip": False}, {"photos": ["moon"]}, {"seed": 1}):
        assert natural(**kw).identity() != base, kw


# ---------------------------------------------------------------------------------------------
# synthetic_objects: the set
# ---------------------------------------------------------------------------------------------

def test_objects_defaults_and_balanced_categories():
    ps = SyntheticObjectsOptions().build()
    assert (len(ps), ps.seed, ps.size, ps.variation, ps.background) == (160, 0, 256, 6, "natural")
    assert len(CATEGORIES) == 8 and set(CATEGORIES) == set(objects())
    labels = ps.labels
    counts = collections.Counter(labels)
    assert set(counts) == set(CATEGORIES) and set(counts.values()) == {20}
    for n in (5, 13, 37):  # any prefix is balanced to within one image per category
        c = collections.Counter(labels[:n])
        assert max(c.values()) - min(c.get(k, 0) for k in CATEGORIES) <= 1
    # every exemplar of every category shows up, equally often within a category
    shown = collections.Counter((ps.label(i), ps.object(i).name) for i in range(len(ps)))
    for cat, exemplars in objects().items():
        assert len(exemplars) >= 3 and len({o.name for o in exemplars}) == len(exemplars)
        assert all(o.category == cat for o in exemplars)
        per = [shown[(cat, o.name)] for o in exemplars]
        assert min(per) >= 1 and max(per) - min(per) <= 1, (cat, per)
    assert ps.stimulus_id(9) == f"synthetic_objects-0-00009-boats-{ps.object(9).name}"


def test_object_is_there_within_bounds_at_variation_0():
    ps = objects_set(variation=0, background="gray", n_images=32, size=96)
    for i in range(len(ps)):
        img, mask = ps.render(i)
        a = px(img)
        frac = float(mask.mean())
        assert 0.02 < frac < 0.6, (i, ps.object(i).name, frac)
        # the whole object is in the frame: nothing touches the border
        assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0.0, i
        assert (a[mask == 0] == 128).all()  # the flat gray background is untouched outside the object
        inside = a[mask == 1.0]
        assert (np.abs(inside - 128).max(axis=1) > 2).mean() > 0.5, i  # and the object shows
        ys, xs = np.nonzero(mask > 0.5)  # centred at variation 0
        assert abs(xs.mean() - 48) < 20 and abs(ys.mean() - 48) < 20, i


def test_exemplars_of_a_category_look_different():
    """Same pose and colours: exemplars differ in shape (faces: at least in hair and features)."""
    colours = np.random.default_rng(0).uniform(0.2, 0.9, size=(9, 3)).astype(np.float32)
    for cat, exemplars in objects().items():
        shots = [render(o, Pose(), colours, SIZE) for o in exemplars]
        for a in range(len(shots)):
            for b in range(a + 1, len(shots)):
                (ca, ma), (cb, mb) = shots[a], shots[b]
                union = ((ma > 0.5) | (mb > 0.5)).sum()
                iou = ((ma > 0.5) & (mb > 0.5)).sum() / union
                if cat != "faces":
                    assert iou < 0.95, (exemplars[a].name, exemplars[b].name, iou)
                assert np.abs(ca - cb).sum(axis=2).sum() / union > 0.1, (exemplars[a].name, exemplars[b].name)


def test_composited_onto_the_natural_crop():
    ps = objects_set(n_images=6, seed=9)
    for i in range(len(ps)):
        img, mask = ps.render(i)
        bg = natural_crop(np.random.default_rng([9, i, 1]), SIZE, 0.3)
        out = mask == 0
        assert out.sum() > 0.3 * SIZE * SIZE
        assert np.array_equal(np.asarray(img)[out], bg[out])


def test_variation_levels_control_pose_position_and_scale():
    n = 96
    poses = {v: [objects_set(variation=v, n_images=n).scene(i)[1] for i in range(n)] for v in (0, 3, 6)}
    for p in poses[0]:
        assert p.rotation == (0.0, 0.0, 0.0) and p.position == (0.0, 0.0) and p.scale == 1.0
    for v, (rot, shift, lo, hi) in {3: (45, 0.3, 0.8, 1.25), 6: (90, 0.6, 0.625, 1.6)}.items():
        r = np.abs([p.rotation for p in poses[v]])
        s = np.abs([p.position for p in poses[v]])
        sc = np.array([p.scale for p in poses[v]])
        assert r.max() <= rot and (r.max(axis=0) > 0.8 * rot).all()  # all three axes turn
        assert s.max() <= shift and s.max() > 0.7 * shift
        assert lo <= sc.min() and sc.max() <= hi and sc.max() / sc.min() > 0.7 * hi / lo
    # variation 0 repeats the exact silhouette of an exemplar; 6 does not
    step = 8 * len(objects()["animals"])
    for v, same in ((0, True), (6, False)):
        ps = objects_set(variation=v, background="gray", n_images=step + 1)
        assert bool(np.array_equal(ps.render(0)[1], ps.render(step)[1])) is same


def test_mixed_variation_balances_levels_and_exemplars():
    ps = objects_set(variation="mixed", n_images=8 * 36)
    levels = [ps.level(i) for i in range(len(ps))]
    assert collections.Counter(levels) == {0: 96, 3: 96, 6: 96}
    assert all(levels[i] == levels[i - i % 8] for i in range(len(ps)))  # one level per run of 8
    pairs = collections.Counter((ps.object(i).name, ps.level(i)) for i in range(len(ps)))
    for exemplars in objects().values():
        assert all(pairs[(o.name, v)] > 0 for o in exemplars for v in (0, 3, 6))


def test_objects_are_anti_aliased():
    ps = objects_set(variation=6, n_images=8)
    for i in range(len(ps)):
        _, mask = ps.render(i)
        edge = (mask > 0) & (mask < 1)
        assert edge.sum() > 10, i
        assert len(np.unique(mask[edge])) >= 5, i  # several coverage levels, not a hard step


def test_synthetic_identity():
    ident = objects_set().identity()
    assert ident["name"] == "synthetic_objects" and ident["variation"] == 6 and "photos_digest" in ident
    assert objects_set(background="gray").identity() != ident
    assert objects_set(variation=3).identity() != ident


# ---------------------------------------------------------------------------------------------
# synthetic_objects: the renderer, against closed-form geometry and shading
# ---------------------------------------------------------------------------------------------

GRAY = np.full((9, 3), 0.6, dtype=np.float32)
N = 128


def single(part: Part) -> SolidObject:
    return SolidObject("probe", "test", (part,), canonical=(0.0, 0.0, 0.0))


def px_per_unit(obj: SolidObject, scale: float = 1.0) -> float:
    """Pixels per object unit when ``obj`` is rendered at ``scale`` on an N-pixel image."""
    return scale * 0.6 / obj.frame[1] * N / 2


@pytest.mark.parametrize(
    "part, area",  # area of the silhouette seen along -z, in object units
    [
        (Part("ellipsoid", (0, 0, 0), (1.0, 0.6, 0.8)), math.pi * 1.0 * 0.6),
        (Part("ellipsoid", (0, 0, 0), (1.0, 0.7, 0.8), clips=((0, 1, 0, 0),)), math.pi * 0.7 / 2),  # hemisphere
        (Part("box", (0, 0, 0), (1.0, 0.5, 0.3)), 4 * 0.5),
        (Part("box", (0, 0, 0), (1.0, 0.8, 0.02), clips=((-1, 1, 0, 0),)), 2 * 0.8),             # triangle
        (Part("cylinder", (0, 0, 0), (0.7, 1.0, 0.7), rot=(90, 0, 0)), math.pi * 0.49),         # along z: disc
        (Part("cylinder", (0, 0, 0), (0.5, 1.0, 0.5)), 2.0),                                    # side: rectangle
        (Part("cone", (0, 0, 0), (0.6, 1.0, 0.6), top=0.0), 1.2),                               # side: triangle
        (Part("cone", (0, 0, 0), (0.6, 1.0, 0.6), top=0.5), 2 * 0.6 * 1.5),                     # trapezoid
        (Part("cone", (0, 0, 0), (0.6, 1.0, 0.6), top=0.5, rot=(90, 0, 0)), math.pi * 0.36),    # base on: disc
        (Part("torus", (0, 0, 0), (1.0, 0.3, 1.0), rot=(90, 0, 0)), 4 * math.pi * 0.3),         # annulus
        (Part("torus", (0, 0, 0), (1.0, 0.3, 1.0), rot=(90, 0, 0), clips=((0, 0, -1, 0),)), 2 * math.pi * 0.3),
    ],
)
def test_silhouette_areas_match_geometry(part, area):
    obj = single(part)
    _, alpha = render(obj, Pose(), GRAY, N)
    expected = area * px_per_unit(obj) ** 2
    assert alpha.sum() == pytest.approx(expected, rel=0.015)


def test_area_scales_with_the_square_of_scale_and_position_moves_it():
    obj = objects()["animals"][0]
    _, a1 = render(obj, Pose(), GRAY, N)
    _, a15 = render(obj, Pose(scale=1.5), GRAY, N)
    assert a15.sum() / a1.sum() == pytest.approx(2.25, rel=0.02)
    _, moved = render(obj, Pose(position=(0.25, -0.125)), GRAY, N)
    assert moved.sum() == pytest.approx(a1.sum(), rel=1e-3)
    yy, xx = np.mgrid[:N, :N]
    shift = ((moved * xx).sum() / moved.sum() - (a1 * xx).sum() / a1.sum(),
             (moved * yy).sum() / moved.sum() - (a1 * yy).sum() / a1.sum())
    assert shift == pytest.approx((0.25 * N / 2, 0.125 * N / 2), abs=0.05)


def test_rotation_is_three_dimensional():
    """Turning about the viewing axis only rotates the silhouette; turning about x or y changes it."""
    obj = objects()["cars"][0]
    _, base = render(obj, Pose(), GRAY, N)
    _, roll = render(obj, Pose(rotation=(0.0, 0.0, 90.0)), GRAY, N)
    _, pitch = render(obj, Pose(rotation=(90.0, 0.0, 0.0)), GRAY, N)
    _, yaw = render(obj, Pose(rotation=(0.0, 90.0, 0.0)), GRAY, N)
    assert roll.sum() == pytest.approx(base.sum(), rel=0.01)
    assert np.abs(np.rot90(base) - roll).mean() < 0.01  # image-plane rotation by 90 degrees
    for other in (pitch, yaw):
        assert abs(other.sum() / base.sum() - 1) > 0.1


def test_lambertian_shading_of_a_sphere():
    obj = single(Part("ellipsoid", (0, 0, 0), (1.0, 1.0, 1.0)))
    centre, radius = obj.frame
    s = 0.6 / radius
    light = np.array([-0.3, 0.5, 0.8])
    albedo = np.tile(np.array([0.9, 0.5, 0.2], np.float32), (9, 1))
    colour, alpha = render(obj, Pose(light=tuple(light)), albedo, N, ambient=0.3, diffuse=0.7)
    light /= np.linalg.norm(light)
    t = (np.arange(N) + 0.5) * 2 / N - 1
    x, y = t[None, :] + centre[0] * s, -t[:, None] + centre[1] * s  # world coordinates about the sphere's centre
    rho2 = (x ** 2 + y ** 2) / s ** 2
    inner = rho2 < (1 - 3 / (s * N / 2)) ** 2  # away from the silhouette, where one ray per pixel is used
    nz = np.sqrt(np.clip(1 - rho2, 0, None))
    n = np.stack(np.broadcast_arrays(x / s, y / s, nz))
    shade = 0.3 * (0.875 + 0.125 * n[1]) + 0.7 * np.maximum(np.tensordot(light, n, 1), 0)
    expected = shade[..., None] * albedo[0]
    assert inner.sum() > 0.5 * math.pi * (s * N / 2) ** 2
    np.testing.assert_allclose(colour[inner], expected[inner], atol=2e-4)
    assert (alpha[inner] == 1).all()
    assert colour[inner].max() > 0.8 and colour[inner][:, 0].min() < 0.35  # lit side bright, far side dark


def test_flat_face_shading_is_uniform_and_follows_the_light():
    obj = single(Part("box", (0, 0, 0), (1.0, 0.5, 0.3)))
    for lz in (1.0, 0.5):
        light = np.array([0.0, math.sqrt(1 - lz * lz), lz])
        colour, alpha = render(obj, Pose(light=tuple(light)), GRAY, N, ambient=0.3, diffuse=0.7)
        face = colour[alpha == 1][:, 0]
        assert np.ptp(face) < 1e-5
        assert face[0] == pytest.approx(0.6 * (0.3 * 0.875 + 0.7 * lz), abs=1e-5)


def test_nearest_surface_wins():
    """A small red box in front of a large gray one shows red; behind it, it is hidden."""
    colours = GRAY.copy()
    colours[1] = (1.0, 0.0, 0.0)
    for z, visible in ((0.5, True), (-0.5, False)):
        obj = SolidObject("pair", "test", (Part("box", (0, 0, 0), (1.0, 1.0, 0.2)),
                                           Part("box", (0, 0, z), (0.3, 0.3, 0.1), mat=1)), canonical=(0, 0, 0))
        colour, _ = render(obj, Pose(), colours, N)
        red = (colour[..., 0] > 0.3) & (colour[..., 1] < 0.05)
        assert bool(red.any()) is visible


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["natural", "synthetic_objects"])
def test_run_experiment_on_each_set(compose_cfg, tmp_path, name):
    from idsim.experiment import run_experiment

    cfg = compose_cfg([f"dataset={name}", "target=alexnet", "sources=[alexnet]", "identical_weights=true",
                       "target.layers=[features.1,features.4]", "sources.alexnet.layers=[features.1,features.4]",
                       "dataset.size=64", *TINY])
    res = run_experiment(cfg, tmp_path)
    s = res.scores
    assert set(s.dataset) == {name} and len(s) == 4
    diag = s[s.source_layer == s.target_layer]
    np.testing.assert_allclose(diag.score, 1.0, atol=1e-6)
    assert (tmp_path / "scores.csv").is_file()


def test_photos_digest_is_remembered_and_follows_the_photo_files(tmp_path, monkeypatch):
    """A warm job reads the digest instead of decoding the photographs; a changed data folder recomputes it."""
    import importlib.util
    import os

    from idsim.datasets import natural

    monkeypatch.setenv("IDSIM_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "skimage"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "astronaut.png").write_bytes(b"v1")
    spec = importlib.util.spec_from_loader("skimage", loader=None, is_package=True)
    spec.submodule_search_locations = [str(fake)]
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "skimage" else real_find(name, *a))

    natural.photos_digest.cache_clear()
    digest = natural.photos_digest()
    memo = natural._digest_memo(natural.PHOTOS)
    assert memo.read_text() == digest
    memo.write_text("remembered")           # the memo is what a later process reads
    natural.photos_digest.cache_clear()
    assert natural.photos_digest() == "remembered"
    os.utime(fake / "data" / "astronaut.png", ns=(1, 1))  # the photographs' files changed: a new key
    natural.photos_digest.cache_clear()
    assert natural._digest_memo(natural.PHOTOS) != memo and natural.photos_digest() == digest
    natural.photos_digest.cache_clear()
