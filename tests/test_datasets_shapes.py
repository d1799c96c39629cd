"""Tests of the embedded procedural probe set (idsim.datasets.shapes)."""
from __future__ import annotations

import collections
import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from idsim.datasets import load_probe_set
from idsim.datasets.base import ProbeSet
from idsim.datasets.shapes import CATEGORIES, ShapesOptions, ShapesProbeSet
from idsim.errors import IdsimError

SIZE = 64  # small images keep the suite fast; the generator is size-agnostic


def pixels(ps: ProbeSet, i: int) -> np.ndarray:
    return np.asarray(ps.image(i))


def test_is_a_probe_set_with_expected_name_and_length():
    ps = ShapesProbeSet(n_images=12, seed=1, size=SIZE)
    assert isinstance(ps, ProbeSet)
    assert ps.name == "shapes"
    assert len(ps) == 12
    assert len(list(ps)) == 12


def test_defaults():
    ps = ShapesOptions().build()
    assert isinstance(ps, ShapesProbeSet) and (len(ps), ps.seed, ps.size) == (100, 0, 256)
    img = ps.image(0)
    assert img.mode == "RGB" and img.size == (256, 256)


@pytest.mark.parametrize("size", [32, 64, 97])
def test_images_are_rgb_pil_of_requested_size(size):
    ps = ShapesProbeSet(n_images=3, seed=0, size=size)
    for img in ps:
        assert isinstance(img, Image.Image)
        assert img.mode == "RGB"
        assert img.size == (size, size)
        assert np.asarray(img).dtype == np.uint8


def test_same_seed_gives_identical_pixels():
    a = ShapesProbeSet(n_images=10, seed=3, size=SIZE)
    b = ShapesProbeSet(n_images=10, seed=3, size=SIZE)
    for i in range(10):
        assert np.array_equal(pixels(a, i), pixels(b, i))
        assert np.array_equal(pixels(a, i), pixels(a, i))  # repeated calls too


def test_pixels_are_identical_across_processes():
    def digest(ps: ShapesProbeSet) -> str:
        h = hashlib.sha256()
        for img in ps:
            h.update(img.tobytes())
        return h.hexdigest()

    code = (
        "import hashlib\n"
        "from idsim.datasets.shapes import ShapesProbeSet\n"
        "h = hashlib.sha256()\n"
        f"for img in ShapesProbeSet(n_images=8, seed=5, size={SIZE}): h.update(img.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    import idsim.datasets.shapes as mod

    root = str(pathlib.Path(mod.__file__).resolve().parents[2])  # repo root, so idsim imports
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == digest(ShapesProbeSet(n_images=8, seed=5, size=SIZE))


def test_different_seed_gives_different_pixels():
    a = ShapesProbeSet(n_images=5, seed=0, size=SIZE)
    b = ShapesProbeSet(n_images=5, seed=1, size=SIZE)
    for i in range(5):
        assert not np.array_equal(pixels(a, i), pixels(b, i))


def test_prefix_property_images_do_not_depend_on_n_images():
    small = ShapesProbeSet(n_images=5, seed=2, size=SIZE)
    large = ShapesProbeSet(n_images=20, seed=2, size=SIZE)
    for i in range(5):
        assert np.array_equal(pixels(small, i), pixels(large, i))
        assert small.label(i) == large.label(i)
        assert small.stimulus_id(i) == large.stimulus_id(i)


def test_different_indices_give_different_images():
    ps = ShapesProbeSet(n_images=16, seed=0, size=SIZE)
    imgs = [pixels(ps, i).astype(np.int16) for i in range(16)]
    for i in range(16):
        for j in range(i + 1, 16):
            assert np.abs(imgs[i] - imgs[j]).mean() > 5.0, (i, j)


def test_labels_are_balanced_and_cover_all_categories():
    n_cat = len(CATEGORIES)
    assert n_cat == 8 and len(set(CATEGORIES)) == n_cat
    ps = ShapesProbeSet(n_images=10 * n_cat, seed=0, size=SIZE)
    labels = ps.labels
    assert labels is not None and len(labels) == len(ps)
    counts = collections.Counter(labels)
    assert set(counts) == set(CATEGORIES)
    assert set(counts.values()) == {10}
    # any prefix is balanced to within one image per category
    for n in (3, 13, 27):
        c = collections.Counter(labels[:n])
        assert max(c.values()) - min(c.get(k, 0) for k in CATEGORIES) <= 1
    assert [ps.label(i) for i in range(n_cat)] == list(CATEGORIES)


def test_stimulus_ids_and_identity():
    ps = ShapesProbeSet(n_images=7, seed=4, size=SIZE)
    assert ps.stimulus_id(0) == "shapes-4-00000"
    assert ps.stimulus_id(6) == "shapes-4-00006"
    assert len({ps.stimulus_id(i) for i in range(7)}) == 7
    assert ps.identity() == {
        "name": "shapes", "generator_version": 1, "seed": 4, "size": SIZE, "n_images": 7,
    }


def test_images_are_not_trivial_and_object_stands_out():
    ps = ShapesProbeSet(n_images=24, seed=0, size=SIZE)
    for i in range(len(ps)):
        img, mask = ps._render(i)
        px = np.asarray(img).astype(np.float32)
        assert px.std() > 10.0, i
        fg, bg = mask > 0.99, mask < 0.01
        assert fg.sum() > 0.005 * SIZE * SIZE, i  # the object is visible, not a speck
        assert bg.sum() > 0.3 * SIZE * SIZE, i  # and does not fill the frame
        diff = np.abs(px[fg].mean(axis=0) - px[bg].mean(axis=0)).max()
        assert diff > 15.0, (i, diff)


def test_backgrounds_are_textured_not_flat():
    ps = ShapesProbeSet(n_images=16, seed=0, size=SIZE)
    for i in range(len(ps)):
        img, mask = ps._render(i)
        px = np.asarray(img).astype(np.float32)
        bg = px[mask < 0.01]
        assert bg.std(axis=0).max() > 2.0, i


def test_objects_are_anti_aliased():
    ps = ShapesProbeSet(n_images=8, seed=0, size=SIZE)
    for i in range(len(ps)):
        _, mask = ps._render(i)
        partial = ((mask > 0.05) & (mask < 0.95)).sum()
        assert partial > 0, i


BAD = [
    ({"n_images": -3}, "dataset.n_images=-3", "a positive integer"),
    ({"n_images": 0}, "dataset.n_images=0", "a positive integer"),
    ({"n_images": 2.5}, "dataset.n_images=2.5", "a positive integer"),
    ({"n_images": "ten"}, "dataset.n_images='ten'", "a positive integer"),
    ({"n_images": True}, "dataset.n_images=true", "a positive integer"),
    ({"size": 16}, "dataset.size=16", "an integer >= 32"),
    ({"size": 64.0}, "dataset.size=64.0", "an integer >= 32"),
    ({"seed": -1}, "dataset.seed=-1", "an integer >= 0"),
    ({"seed": None}, "dataset.seed=", "an integer >= 0"),
]


@pytest.mark.parametrize("kwargs, value, valid", BAD)
def test_bad_options_raise_one_line_idsim_error(kwargs, value, valid):
    """A config mapping (checked by type while merged into ShapesOptions, then by range)..."""
    with pytest.raises(IdsimError) as exc:
        load_probe_set({"name": "shapes", **kwargs})
    msg = str(exc.value)
    assert msg.startswith(value) and f"valid: {valid}" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("kwargs, value, valid", BAD)
def test_bad_options_objects_are_rejected_by_their_checks(kwargs, value, valid):
    """...and an options object made in Python, which no type check has seen, are judged alike."""
    with pytest.raises(IdsimError) as exc:
        load_probe_set(ShapesOptions(**kwargs))
    msg = str(exc.value)
    assert msg.startswith(value) and f"valid: {valid}" in msg and "\n" not in msg


def test_numpy_integers_are_accepted():
    for cfg in (ShapesOptions(n_images=np.int64(3), seed=np.int32(1), size=np.int64(40)),
                {"name": "shapes", "n_images": np.int64(3), "seed": np.int32(1), "size": np.int64(40)}):
        ps = load_probe_set(cfg)
        assert len(ps) == 3 and ps.identity()["size"] == 40 and type(ps.identity()["size"]) is int
        assert np.array_equal(pixels(ps, np.int64(1)), pixels(ps, 1))


@pytest.mark.parametrize("i", [3, 100, -1])
def test_out_of_range_index_raises_index_error(i):
    ps = ShapesProbeSet(n_images=3, seed=0, size=SIZE)
    with pytest.raises(IndexError):
        ps.image(i)
    with pytest.raises(IndexError):
        ps[i]
    with pytest.raises(IndexError):
        ps.label(i)
    with pytest.raises(IndexError):
        ps.stimulus_id(i)
