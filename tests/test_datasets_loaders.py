"""Tests of the file-based probe sets (folder, imagenet, hvm, freeman_ziemba, allen_scenes) and of
``python -m idsim.datasets show``, on tiny data sets each test writes itself."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import types
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY
from idsim.datasets import load_probe_set, registry
from idsim.datasets import __main__ as cli
from idsim.datasets.allen import TEMPLATE_KEY, AllenScenesOptions
from idsim.datasets.folders import FileProbeSet, FolderOptions, FreemanZiembaOptions, HvmOptions, ImagenetOptions
from idsim.errors import IdsimError


def test_file_sets_are_registered():
    assert {name: registry()[name] for name in ("folder", "imagenet", "hvm", "freeman_ziemba", "allen_scenes")} == {
        "folder": FolderOptions, "imagenet": ImagenetOptions, "hvm": HvmOptions,
        "freeman_ziemba": FreemanZiembaOptions, "allen_scenes": AllenScenesOptions}


def rgb(seed: int, h: int = 20, w: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h: int = 20, w: int = 30) -> np.ndarray:
    """A smooth colour gradient: what JPEG keeps well (random noise it does not)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], axis=2).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return arr


def px(probe, i: int) -> np.ndarray:
    img = probe.image(i)
    assert img.mode == "RGB"
    return np.asarray(img)


def one_line_error(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# --------------------------------------------------------------------------------------------
# dataset=folder
# --------------------------------------------------------------------------------------------

@pytest.fixture
def classes(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """root/cats/{0,1,2}.png, root/dogs/{0,1}.PNG, root/dogs/x.jpg, root/z.bmp, plus files that are not images."""
    root = tmp_path / "imgs"
    arrays = {}
    for k in range(3):
        arrays[f"cats/{k}.png"] = save(root / "cats" / f"{k}.png", rgb(k))
    for k in range(2):
        arrays[f"dogs/{k}.PNG"] = save(root / "dogs" / f"{k}.PNG", rgb(10 + k))
    arrays["dogs/x.jpg"] = save(root / "dogs" / "x.jpg", smooth(), quality=95)
    arrays["z.bmp"] = save(root / "z.bmp", rgb(30))
    (root / "notes.txt").write_text("not an image")
    (root / "dogs" / "._0.png").write_bytes(b"macOS resource fork")
    save(root / ".hidden" / "h.png", rgb(40))
    return root, arrays


def test_folder_lists_images_sorted_with_labels_and_exact_pixels(classes):
    root, arrays = classes
    ps = load_probe_set({"name": "folder", "root": str(root)})
    assert isinstance(ps, FileProbeSet) and ps.name == "folder"
    ids = [ps.stimulus_id(i) for i in range(len(ps))]
    assert ids == ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.PNG", "dogs/1.PNG", "dogs/x.jpg", "z.bmp"]
    assert ps.labels == ["cats", "cats", "cats", "dogs", "dogs", "dogs", None]
    for i, sid in enumerate(ids):
        if sid.endswith(".jpg"):  # lossy: equal to Pillow's own decode, close to what was written
            assert np.array_equal(px(ps, i), np.asarray(Image.open(root / sid).convert("RGB")))
            assert np.abs(px(ps, i).astype(int) - arrays[sid]).mean() < 3
        else:
            assert np.array_equal(px(ps, i), arrays[sid]), sid


def test_folder_flat_has_no_labels_and_non_recursive_option(classes, tmp_path):
    root, _ = classes
    flat = load_probe_set({"name": "folder", "root": str(root), "recursive": False})
    assert [flat.stimulus_id(i) for i in range(len(flat))] == ["z.bmp"] and flat.labels is None


def test_grayscale_16bit_and_alpha_become_rgb(tmp_path):
    g = np.random.default_rng(0).integers(0, 256, (12, 9), dtype=np.uint8)
    save(tmp_path / "a_gray.png", g)
    g16 = (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600)
    Image.fromarray(g16).save(tmp_path / "b_gray16.png")
    rgba = np.dstack([rgb(1, 12, 9), np.full((12, 9), 7, np.uint8)])
    save(tmp_path / "c_rgba.png", rgba)
    ps = load_probe_set({"name": "folder", "root": str(tmp_path)})
    assert np.array_equal(px(ps, 0), np.repeat(g[:, :, None], 3, axis=2))
    out16 = px(ps, 1)
    assert np.array_equal(out16[..., 0], out16[..., 2])
    assert np.array_equal(out16[..., 0], np.rint(g16 / 257.0).astype(np.uint8))  # scaled, not clipped at 255
    assert np.array_equal(px(ps, 2), rgba[..., :3])


def test_folder_interleaved_order_round_robins_labels(classes):
    root, _ = classes
    ps = load_probe_set({"name": "folder", "root": str(root), "order": "interleaved"})
    assert [ps.label(i) for i in range(len(ps))] == ["cats", "dogs", None, "cats", "dogs", "cats", "dogs"]


def test_n_images_takes_a_prefix_and_more_than_exist_is_an_error(classes):
    root, _ = classes
    full = load_probe_set({"name": "folder", "root": str(root)})
    part = load_probe_set({"name": "folder", "root": str(root), "n_images": 3})
    assert len(part) == 3
    for i in range(3):
        assert part.stimulus_id(i) == full.stimulus_id(i) and np.array_equal(px(part, i), px(full, i))
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": str(root), "n_images": 50})
    assert "only 7 images" in one_line_error(e)


def test_identity_tracks_file_changes_but_not_location(classes, tmp_path):
    root, _ = classes
    ident = load_probe_set({"name": "folder", "root": str(root)}).identity()
    assert load_probe_set({"name": "folder", "root": str(root)}).identity() == ident
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)  # copy2 keeps sizes and mtimes: same files, same identity
    assert load_probe_set({"name": "folder", "root": str(moved)}).identity() == ident
    save(moved / "cats" / "1.png", rgb(99, 21, 30))  # a changed file
    assert load_probe_set({"name": "folder", "root": str(moved)}).identity() != ident
    st = os.stat(root / "cats" / "1.png")
    os.utime(root / "cats" / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert load_probe_set({"name": "folder", "root": str(root)}).identity() != ident
    assert load_probe_set({"name": "folder", "root": str(root), "order": "interleaved"}).identity() != \
        load_probe_set({"name": "folder", "root": str(root)}).identity()


def test_corrupt_image_fails_naming_it_or_is_skipped_with_a_count(classes, caplog):
    root, _ = classes
    (root / "cats" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "dogs" / "x.jpg").write_bytes(b"")
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": str(root)})
    msg = one_line_error(e)
    assert "2 of 7" in msg and str(root / "cats" / "1.png") in msg and str(root / "dogs" / "x.jpg") in msg
    assert "skip_unreadable" in msg
    with caplog.at_level(logging.WARNING, logger="idsim"):
        ps = load_probe_set({"name": "folder", "root": str(root), "skip_unreadable": True})
    assert len(ps) == 5 and "cats/1.png" not in [ps.stimulus_id(i) for i in range(5)]
    assert any("skipped 2 unreadable" in r.getMessage() for r in caplog.records)
    # with n_images only the images a run can use are checked: the first two are fine
    assert len(load_probe_set({"name": "folder", "root": str(root), "n_images": 1})) == 1


def test_truncated_jpeg_and_empty_file_are_found_before_any_forward_pass(tmp_path, caplog, monkeypatch):
    """Every image is decoded when the set opens (a header check misses a truncated JPEG)."""
    from idsim.datasets import folders

    for i in range(6):
        save(tmp_path / f"{i}.jpg", smooth(64, 64), quality=95)
    data = (tmp_path / "0.jpg").read_bytes()
    (tmp_path / "3.jpg").write_bytes(data[: len(data) // 2])  # header intact: truncated pixels
    (tmp_path / "5.jpg").write_bytes(b"")
    save(tmp_path / "6.png", rgb(3))
    save(tmp_path / "7.png", rgb(4))
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": str(tmp_path)})
    msg = one_line_error(e)
    assert "2 of 8" in msg and f"{tmp_path / '3.jpg'} (truncated)" in msg and f"{tmp_path / '5.jpg'} (empty file)" in msg
    with caplog.at_level(logging.WARNING, logger="idsim"):
        ps = load_probe_set({"name": "folder", "root": str(tmp_path), "skip_unreadable": True})
    assert len(ps) == 6 and ps.unreadable == [str(tmp_path / "3.jpg"), str(tmp_path / "5.jpg")]
    assert any("skipped 2 unreadable" in r.getMessage() for r in caplog.records)
    assert [ps.image(i).size for i in range(6)]  # every kept image decodes: nothing dies mid-extraction

    # the verdicts are remembered by size and mtime: opening again decodes nothing ...
    def no_decoding(store, key):
        raise AssertionError(f"decoded {key} again")

    monkeypatch.setattr(folders, "unreadable_reason", no_decoding)
    assert len(load_probe_set({"name": "folder", "root": str(tmp_path), "skip_unreadable": True})) == 6
    # ... until a file changes
    (tmp_path / "3.jpg").write_bytes(data)
    monkeypatch.undo()
    assert len(load_probe_set({"name": "folder", "root": str(tmp_path), "skip_unreadable": True})) == 7


def test_unreadable_error_names_the_first_ten_then_counts_the_rest(tmp_path):
    save(tmp_path / "ok.png", rgb(1))
    for i in range(13):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"not a png")
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": str(tmp_path)})
    msg = one_line_error(e)
    assert "13 of 14" in msg and "and 3 more" in msg
    assert all(str(tmp_path / f"bad{i:02d}.png") in msg for i in range(10))
    assert str(tmp_path / "bad10.png") not in msg


@pytest.mark.parametrize("root, expected", [
    (None, "dataset.root is not set"),
    ("/nonexistent/idsim/xyz", "dataset.root=/nonexistent/idsim/xyz does not exist"),
])
def test_missing_root_is_a_one_line_error(root, expected):
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": root})
    msg = one_line_error(e)
    assert expected in msg and "expected a folder of images" in msg


def test_empty_root_and_bad_options(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "folder", "root": str(tmp_path)})
    assert "has no images" in one_line_error(e) and "dataset.root" in str(e.value)
    save(tmp_path / "a.png", rgb(0))
    for opts, expected in [({"order": "random"}, "dataset.order='random'; valid: sorted (by path, grouped by"
                                                 " sub-folder) or interleaved (round-robin over labels)"),
                           ({"skip_unreadable": "perhaps"}, "dataset.skip_unreadable='perhaps'"),
                           ({"n_images": 0}, "dataset.n_images=0; valid: null (all images) or a positive integer"),
                           ({"colour": 1}, "unknown config key 'dataset.colour'; valid keys of dataset: name, root,")]:
        with pytest.raises(IdsimError) as e:
            load_probe_set({"name": "folder", "root": str(tmp_path), **opts})
        assert expected in one_line_error(e)


# --------------------------------------------------------------------------------------------
# dataset=imagenet
# --------------------------------------------------------------------------------------------

@pytest.fixture
def imagenet(tmp_path) -> Path:
    root = tmp_path / "in" / "val"  # torchvision's layout: the classes sit in root/val
    sizes = {"n01440764": 5, "n01443537": 2, "n01484850": 4}
    for c, n in sizes.items():
        for k in range(n):
            save(root / c / f"ILSVRC2012_val_{c[-3:]}{k:02d}.JPEG", rgb(int(c[1:]) + k, 16, 16), quality=90)
    return root


def test_imagenet_first_k_per_class_interleaved(imagenet):
    ps = load_probe_set({"name": "imagenet", "root": str(imagenet.parent), "images_per_class": 3})
    assert [ps.label(i) for i in range(len(ps))] == ["n01440764", "n01443537", "n01484850"] * 2 + \
        ["n01440764", "n01484850"]
    assert ps.stimulus_id(0) == "ILSVRC2012_val_76400" and ps.stimulus_id(3) == "ILSVRC2012_val_76401"
    assert np.array_equal(px(ps, 1), np.asarray(Image.open(imagenet / "n01443537" / "ILSVRC2012_val_53700.JPEG")))
    ids = {ps.stimulus_id(i) for i in range(len(ps))}
    assert "ILSVRC2012_val_76403" not in ids  # the 4th of a class is not taken
    part = load_probe_set({"name": "imagenet", "root": str(imagenet), "images_per_class": 3, "n_images": 4})
    assert [part.stimulus_id(i) for i in range(4)] == [ps.stimulus_id(i) for i in range(4)]


def test_imagenet_class_major_and_errors(imagenet, tmp_path):
    ps = load_probe_set({"name": "imagenet", "root": str(imagenet), "images_per_class": 2, "order": "class_major"})
    assert ps.labels == ["n01440764"] * 2 + ["n01443537"] * 2 + ["n01484850"] * 2
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "imagenet", "root": str(imagenet), "images_per_class": 0})
    assert "dataset.images_per_class=0; valid: a positive integer" in one_line_error(e)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "imagenet", "root": str(imagenet), "labels": "words"})
    assert "needs the 1000 ImageNet class folders" in one_line_error(e)
    flat = tmp_path / "flat"
    save(flat / "ILSVRC2012_val_00000001.JPEG", rgb(0))
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "imagenet", "root": str(flat)})
    msg = one_line_error(e)
    assert "no class sub-folders" in msg and "1 loose images" in msg and "n01440764" in msg


# --------------------------------------------------------------------------------------------
# Brain-Score stimulus sets: dataset=hvm, dataset=freeman_ziemba
# --------------------------------------------------------------------------------------------

def write_hvm(root: Path, layout: str = "folder", legacy: bool = False, category: bool = True) -> dict[str, np.ndarray]:
    """A miniature Brain-Score HvM set: image_<csv stem>.csv plus its images (PNG, 16x16)."""
    stem = "image_dicarlo_hvm-public"
    objs = [("car_alpha", "Cars"), ("face0001", "Faces"), ("bear", "Animals")]
    rows, arrays = [], {}
    for k in range(9):
        obj, cat = objs[k % 3]
        sid = f"{k:040x}"
        fname = f"{sid}.png"
        arrays[sid] = rgb(100 + k, 16, 16)
        rows.append({"image_id" if legacy else "stimulus_id": sid, "object_name": obj,
                     **({"category_name": cat} if category else {}), "variation": [0, 3, 6][k // 3],
                     "filename": fname, "s": 1.0 + k / 10, "background_id": f"bg{k}"})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / f"{stem}.csv", index=False)
    if layout == "folder":  # the zip unpacked next to the CSV into a folder of the same name
        for sid, a in arrays.items():
            save(root / stem / f"{sid}.png", a)
    elif layout == "flat":
        for sid, a in arrays.items():
            save(root / f"{sid}.png", a)
    else:  # the zip itself, images under a folder inside it
        with zipfile.ZipFile(root / f"{stem}.zip", "w") as zf:
            for sid, a in arrays.items():
                tmp = root / "tmp.png"
                save(tmp, a)
                zf.write(tmp, f"{stem}/{sid}.png")
                tmp.unlink()
    return arrays


@pytest.mark.parametrize("layout", ["folder", "flat", "zip"])
def test_hvm_reads_brainscore_layouts_pixel_exact(tmp_path, layout):
    arrays = write_hvm(tmp_path / "hvm", layout)
    ps = load_probe_set({"name": "hvm", "root": str(tmp_path / "hvm"), "order": "csv"})
    assert len(ps) == 9
    assert [ps.label(i) for i in range(3)] == ["Cars", "Faces", "Animals"]
    for i in range(9):
        assert np.array_equal(px(ps, i), arrays[ps.stimulus_id(i)])
    ps.identity()  # fingerprints every member


def test_hvm_zip_set_survives_pickling(tmp_path):
    import pickle

    arrays = write_hvm(tmp_path, "zip")
    ps = load_probe_set({"name": "hvm", "root": str(tmp_path)})
    ps.image(0)  # opens the archive in this process
    clone = pickle.loads(pickle.dumps(ps))
    assert np.array_equal(px(clone, 3), arrays[ps.stimulus_id(3)])


def test_hvm_variation_filter_labels_and_legacy_ids(tmp_path):
    write_hvm(tmp_path, legacy=True, category=False)
    ps = load_probe_set({"name": "hvm", "root": str(tmp_path), "variation": [3, "V6"]})
    assert sorted(ps.stimulus_id(i) for i in range(len(ps))) == [f"{k:040x}" for k in range(3, 9)]
    assert sorted(set(ps.labels)) == ["bear", "car_alpha", "face0001"]  # object_name without category_name
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "hvm", "root": str(tmp_path), "variation": 9})
    assert "matches no stimuli; values present: 0, 3, 6" in one_line_error(e)
    for bad, shown in (([], "[]"), ([3, [6]], "[3,[6]]"), ({"level": 3}, "{'level': 3}")):
        with pytest.raises(IdsimError) as e:
            load_probe_set({"name": "hvm", "root": str(tmp_path), "variation": bad})
        assert f"dataset.variation={shown}; valid: null (all), a level or a list of levels" in one_line_error(e)


def test_hvm_errors(tmp_path):
    write_hvm(tmp_path)
    csv = tmp_path / "image_dicarlo_hvm-public.csv"
    df = pd.read_csv(csv)
    df.drop(columns=["object_name", "filename"]).to_csv(csv, index=False)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "hvm", "root": str(tmp_path)})
    assert "lacks column(s) filename, object_name" in one_line_error(e)
    df.to_csv(csv, index=False)
    (tmp_path / "image_dicarlo_hvm-public" / df.filename[4]).unlink()
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "hvm", "root": str(tmp_path)})
    assert f"1 of 9 files named in {csv.name} are missing" in one_line_error(e) and df.filename[4] in str(e.value)
    df.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "hvm", "root": str(tmp_path)})
    assert "2 CSV files" in one_line_error(e) and "dataset.csv" in str(e.value)


def test_hvm_interleaves_categories_by_default(tmp_path):
    write_hvm(tmp_path)
    pd.read_csv(tmp_path / "image_dicarlo_hvm-public.csv").sort_values("category_name").to_csv(
        tmp_path / "image_dicarlo_hvm-public.csv", index=False)
    ps = load_probe_set({"name": "hvm", "root": str(tmp_path), "n_images": 3})
    assert ps.labels == ["Animals", "Cars", "Faces"]


def write_fz(root: Path) -> None:
    rows = []
    for kind, tag in (("texture", "tex"), ("noise", "noise")):
        for fam in (13, 18):
            for smp in (1, 2):
                fname = f"{tag}-320x320-im{fam}-smp{smp}.png"
                save(root / "images" / fname, rgb(fam * 10 + smp + (kind == "noise"), 12, 12))
                rows.append({"stimulus_id": fname[:-4], "texture_family": fam, "texture_type": kind,
                             "resolution": "320x320", "sample": smp, "filename": fname})
    pd.DataFrame(rows).to_csv(root / "FreemanZiemba2013.csv", index=False)


def test_freeman_ziemba_filters_and_labels(tmp_path):
    write_fz(tmp_path)
    both = load_probe_set({"name": "freeman_ziemba", "root": str(tmp_path)})
    assert len(both) == 8 and both.labels[:2] == ["13", "18"]
    tex = load_probe_set({"name": "freeman_ziemba", "root": str(tmp_path), "texture_type": "texture",
                          "resolution": 320})
    assert len(tex) == 4 and all(tex.stimulus_id(i).startswith("tex-") for i in range(4))
    assert np.array_equal(px(tex, 0), rgb(131, 12, 12))
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "freeman_ziemba", "root": str(tmp_path), "texture_type": "grating"})
    assert "dataset.texture_type='grating'; valid: both, texture or noise" in one_line_error(e)
    pd.read_csv(tmp_path / "FreemanZiemba2013.csv").drop(columns=["texture_family"]).to_csv(
        tmp_path / "FreemanZiemba2013.csv", index=False)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "freeman_ziemba", "root": str(tmp_path)})
    assert "lacks column(s) texture_family" in one_line_error(e)


# --------------------------------------------------------------------------------------------
# dataset=allen_scenes
# --------------------------------------------------------------------------------------------

def write_nwb(path: Path, stack: np.ndarray, group: bool = True) -> Path:
    with h5py.File(path, "w") as f:
        if group:  # as Allen's ophys NWB files store it: a TimeSeries group with a `data` dataset
            f.create_group(TEMPLATE_KEY).create_dataset("data", data=stack)
        else:
            f.create_dataset(TEMPLATE_KEY, data=stack)
        f.create_dataset("general/session_type", data="three_session_B")
    return path


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 30, 40), dtype=np.uint8)


@pytest.mark.parametrize("group, dtype", [(True, np.uint8), (False, np.float32)])
def test_allen_from_nwb_is_pixel_exact_and_three_channel(tmp_path, stack, group, dtype):
    nwb = write_nwb(tmp_path / "ophys.nwb", stack.astype(dtype), group)
    ps = load_probe_set({"name": "allen_scenes", "nwb": str(nwb)})
    assert len(ps) == 5 and ps.name == "allen_scenes" and ps.stimulus_id(4) == "4" and ps.labels is None
    for i in range(5):
        assert np.array_equal(px(ps, i), np.repeat(stack[i][:, :, None], 3, axis=2))
    assert len(load_probe_set({"name": "allen_scenes", "nwb": str(nwb), "n_images": 2})) == 2


def test_allen_nwb_errors_and_no_source(tmp_path, stack):
    with h5py.File(tmp_path / "other.nwb", "w") as f:
        f.create_dataset("stimulus/templates/natural_movie_one_image_stack/data", data=stack)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes", "nwb": str(tmp_path / "other.nwb")})
    assert "no natural-scenes template at stimulus/templates/natural_scenes_image_stack" in one_line_error(e)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes", "nwb": str(tmp_path / "missing.nwb")})
    assert "no such file" in one_line_error(e)
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes"})
    msg = one_line_error(e)
    assert "dataset.root=" in msg and "dataset.nwb=" in msg and "dataset.download=true" in msg


@pytest.mark.parametrize("opts, expected", [
    ({"nwb_key": "/"}, f"dataset.nwb_key='/'; valid: an HDF5 path such as {TEMPLATE_KEY}"),
    ({"experiment_id": "latest"}, "dataset.experiment_id='latest': wrong type; valid: null (the lowest-numbered"),
    ({"experiment_id": -1}, "dataset.experiment_id=-1; valid: null (the lowest-numbered"),
    ({"cache_dir": ""}, "dataset.cache_dir=''; valid: a folder path"),
    ({"download": "maybe"}, "dataset.download='maybe'"),
])
def test_allen_bad_options(opts, expected):
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes", **opts})
    assert expected in one_line_error(e)


def test_allen_from_folder_orders_by_scene_index(tmp_path, stack):
    for i in (0, 2, 10):
        save(tmp_path / f"natural_scene_{i:03d}.png", stack[i % 5])
    ps = load_probe_set({"name": "allen_scenes", "root": str(tmp_path)})
    assert [ps.stimulus_id(i) for i in range(3)] == ["0", "2", "10"]
    assert np.array_equal(px(ps, 2), np.repeat(stack[0][:, :, None], 3, axis=2))
    save(tmp_path / "2.tif", stack[1])
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes", "root": str(tmp_path)})
    assert "both claim scene 2" in one_line_error(e)


def test_allen_download_needs_allensdk(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "allensdk", None)  # import fails as when not installed
    with pytest.raises(IdsimError) as e:
        load_probe_set({"name": "allen_scenes", "download": True, "cache_dir": str(tmp_path)})
    assert "needs the allensdk package" in one_line_error(e)


def test_allen_download_through_allensdk_cache(tmp_path, monkeypatch, stack):
    """The AllenSDK path, with a stand-in BrainObservatoryCache serving a local NWB file."""
    nwb = write_nwb(tmp_path / "ophys_experiment_2.nwb", stack)
    calls = {}

    class FakeCache:
        def __init__(self, manifest_file):
            calls["manifest"] = manifest_file

        def get_ophys_experiments(self, session_types=None, ids=None):
            calls["session_types"] = session_types
            return [{"id": 7, "session_type": "three_session_B"}, {"id": 2, "session_type": "three_session_B"}]

        def get_ophys_experiment_data(self, experiment_id):
            calls["experiment"] = experiment_id
            return types.SimpleNamespace(nwb_file=str(nwb))

    mod = types.ModuleType("allensdk.core.brain_observatory_cache")
    mod.BrainObservatoryCache = FakeCache
    for name in ("allensdk", "allensdk.core"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "allensdk.core.brain_observatory_cache", mod)
    ps = load_probe_set({"name": "allen_scenes", "download": True, "cache_dir": str(tmp_path / "boc")})
    assert calls == {"manifest": str(tmp_path / "boc" / "manifest.json"), "session_types": ["three_session_B"],
                     "experiment": 2}
    assert ps.identity()["experiment_id"] == 2 and np.array_equal(px(ps, 1)[..., 1], stack[1])


# --------------------------------------------------------------------------------------------
# python -m idsim.datasets show
# --------------------------------------------------------------------------------------------

def test_show_writes_contact_sheet_for_shapes(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert cli.main(["show", "dataset=shapes", "dataset.n_images=10", "dataset.size=64", "--out", str(out),
                     "--n", "7", "--cols", "3", "--thumb", "40"]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == cli.sheet_size(7, 3, 40)
    assert cli.sheet_size(7, 3, 40) == (3 * (40 + cli.PAD) + cli.PAD, cli.HEADER + 3 * (40 + cli.CAPTION + cli.PAD) + cli.PAD)
    printed = capsys.readouterr().out
    assert str(out) in printed and "10 images, 8 labels" in printed


def test_show_folder_set_default_path(classes, tmp_path, monkeypatch, capsys):
    root, arrays = classes
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "dataset=folder", f"dataset.root={root}", "--thumb", "32"]) == 0
    out = tmp_path / "outputs" / "contact_sheets" / "folder.png"
    with Image.open(out) as img:
        assert img.size == cli.sheet_size(7, 8, 32)
        sheet = np.asarray(img.convert("RGB"))
    # the first thumbnail is cats/0.png (30x20) scaled into the 32x32 cell
    x, y = cli.PAD, cli.HEADER
    cell = sheet[y:y + 32, x:x + 32]
    assert np.array_equal(cell[0, 0], cli.CELL) and not np.array_equal(cell[16, 16], cli.CELL)
    assert "7 images, 2 labels (cats 3, dogs 3), 1 unlabelled" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["show", "dataset=nope"], "unknown dataset 'nope'"),
    (["show", "dataset=folder"], "dataset.root is not set"),
    (["show", "dataset=shapes", "--n", "-3"], "argument --n"),
    (["show", "dataset=shapes", "dataset.colour=1"], "unknown config key 'dataset.colour'"),
    (["show", "dataset=shapes", "--out", "x.jpg"], "--out must name a .png file"),
    (["list"], "unknown command 'list'"),
])
def test_show_bad_arguments_are_one_line_errors(argv, expected, capsys):
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("idsim: error:")]
    assert len(err) == 1 and expected in err[0], err


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------

def test_run_experiment_on_a_folder_set(compose_cfg, tmp_path):
    from idsim.experiment import run_experiment

    root = tmp_path / "probe"
    for k in range(12):
        save(root / ("a" if k % 2 else "b") / f"{k:02d}.png", rgb(k, 48, 64))
    cfg = compose_cfg(["dataset=folder", f"dataset.root={root}", "target=alexnet", "sources=[alexnet]",
                       "identical_weights=true", "target.layers=[features.1]",
                       "sources.alexnet.layers=[features.1,features.4]", *TINY])
    res = run_experiment(cfg, tmp_path / "run")
    s = res.scores.set_index("source_layer").score
    assert s["features.1"] == pytest.approx(1.0, abs=1e-6) and s["features.4"] < 1 - 1e-4
    assert (res.scores.dataset == "folder").all() and (res.scores.n_images == 12).all()
