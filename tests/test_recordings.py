"""Recordings as targets: the format and its errors, reliability, ceilings, Allen NWB files, runs on recordings."""
import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from idsim import recordings
from idsim.errors import IdsimError
from idsim.recordings import allen, assembly
from idsim.recordings.reliability import spearman_brown, split_half_reliability
from idsim.recordings.target import RecordingTarget
from idsim.systems.recording import FileTrials, stimuli_folder

RUN = ["logger=none", "plots=false", "extraction.progress=false"]


def write_images(folder, ids, size=32, seed=0, gray=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for s in ids:
        shape = (size, size) if gray else (size, size, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"{s}.png")
    return folder


def planted_assembly(n_rel=6, n_unrel=6, reps=8, stimuli=40, seed=0):
    """Responses with ``n_rel`` reliable neuroids (signal + little noise) and ``n_unrel`` pure-noise ones."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((stimuli, n_rel))
    rel = signal[None] + 0.3 * rng.standard_normal((reps, stimuli, n_rel))
    unrel = rng.standard_normal((reps, stimuli, n_unrel))
    return np.concatenate([rel, unrel], axis=2).astype(np.float32)


def save(tmp_path, responses, regions=None, stimuli="imgs", name="resp.nc", **attrs):
    p = responses.shape[-2]
    n = responses.shape[-1]
    ids = [f"im{i}" for i in range(p)]
    write_images(tmp_path / "imgs", ids)
    return assembly.write(tmp_path / name, responses, ids, [f"n{j}" for j in range(n)],
                          regions if regions is not None else ["V1"] * n, attrs={"stimuli": stimuli, **attrs})


# --------------------------------------------------------------------------- reliability


def test_split_half_equals_hand_written_spearman_brown():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 30, 5)) + rng.standard_normal((1, 30, 5))
    got = split_half_reliability(x, splits=1, shuffle=False)
    a, b = x[:5].mean(0), x[5:].mean(0)
    want = []
    for u in range(5):
        r = np.corrcoef(a[:, u], b[:, u])[0, 1]
        want.append(2 * r / (1 + r))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(spearman_brown(0.5), 2 / 3)


def test_split_half_is_seeded_and_averages_random_splits():
    x = planted_assembly()
    a = split_half_reliability(x, splits=5, seed=3)
    np.testing.assert_array_equal(a, split_half_reliability(x, splits=5, seed=3))
    assert not np.array_equal(a, split_half_reliability(x, splits=5, seed=4))
    assert (a[:6] > 0.9).all() and (np.abs(a[6:]) < 0.6).all()
    with pytest.raises(IdsimError, match="at least 2 repetitions"):
        split_half_reliability(x[:1])


def test_threshold_drops_exactly_the_unreliable_neuroids(tmp_path):
    rec = assembly.load(save(tmp_path, planted_assembly()))
    target = RecordingTarget(FileTrials(rec, ["V1"]), min_reliability=0.7, splits=10, seed=0, label="rec")
    np.testing.assert_array_equal(target.kept("V1"), np.arange(6))
    from idsim import load_metric

    metric = load_metric("regression_loo")
    plan = metric.plan("target")
    feats = target.features(plan)
    assert feats["V1"].n_units == 6
    np.testing.assert_allclose(feats["V1"].units, rec.responses[:, :, :6].mean(0), atol=1e-6)
    table = target.ceilings(metric, plan, feats)
    assert table.loc[0, "n_neuroids"] == 12 and table.loc[0, "n_kept"] == 6
    assert 0.9 < table.loc[0, "ceiling"] <= 1


def test_region_without_reliable_neuroids_is_dropped(tmp_path):
    x = planted_assembly()
    rec = assembly.load(save(tmp_path, x, regions=["V1"] * 6 + ["LM"] * 6))
    target = RecordingTarget(FileTrials(rec, ["V1", "LM"]), 0.7, 10, 0, "rec")
    assert list(target.averaged()) == ["V1"]
    strict = RecordingTarget(FileTrials(rec, ["LM"]), 0.7, 10, 0, "rec")
    with pytest.raises(IdsimError, match="no region has a neuroid"):
        strict.averaged()


# --------------------------------------------------------------------------- the format's errors


def test_bad_files_get_one_line_each(tmp_path):
    import xarray as xr

    good = planted_assembly(stimuli=5)
    ids = [f"im{i}" for i in range(5)]

    def da(values=good, dims=("repetition", "presentation", "neuroid"), drop=()):
        coords = {"stimulus_id": ("presentation", ids), "neuroid_id": ("neuroid", [f"n{j}" for j in range(12)]),
                  "region": ("neuroid", ["V1"] * 12)}
        return xr.DataArray(values, dims=dims, coords={k: v for k, v in coords.items() if k not in drop},
                            name="responses")

    cases = {
        "no `stimulus_id` coordinate": da(drop=("stimulus_id",)),
        "no `region` coordinate": da(drop=("region",)),
        "responses has dims \\(time, presentation, neuroid\\)": da(dims=("time", "presentation", "neuroid")),
        "NaN or infinite values \\(first at repetition 0, presentation 2": None,
    }
    nan = good.copy()
    nan[0, 2, 3] = np.nan
    cases["NaN or infinite values \\(first at repetition 0, presentation 2"] = da(nan)
    for i, (msg, array) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.nc"
        array.to_dataset().to_netcdf(path, engine="h5netcdf")
        with pytest.raises(IdsimError, match=msg) as e:
            assembly.load(path)
        assert "\n" not in str(e.value)
    dup = da()
    dup = dup.assign_coords(stimulus_id=("presentation", ["a", "a", "b", "c", "d"]))
    dup.to_dataset().to_netcdf(tmp_path / "dup.nc", engine="h5netcdf")
    with pytest.raises(IdsimError, match="stimulus_id 'a' appears on more than one presentation"):
        assembly.load(tmp_path / "dup.nc")
    xr.Dataset({"rates": da()}).to_netcdf(tmp_path / "novar.nc", engine="h5netcdf")
    with pytest.raises(IdsimError, match="no variable `responses` \\(variables: rates\\)"):
        assembly.load(tmp_path / "novar.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(IdsimError, match="cannot read it as netCDF"):
        assembly.load(tmp_path / "junk.nc")


def test_stimuli_must_match_the_responses(tmp_path):
    rec = assembly.load(save(tmp_path, planted_assembly(stimuli=5)))
    probe = stimuli_folder(rec, None)  # the folder the file names, in the file's order
    assert [probe.stimulus_id(i) for i in range(5)] == rec.stimulus_ids
    assert probe.image(0).mode == "RGB" and probe.image(0).size == (32, 32)  # grayscale made 3-channel
    (tmp_path / "imgs" / "im3.png").unlink()
    with pytest.raises(IdsimError, match="1 of 5 stimuli of .* have no image in .*\\(im3\\)"):
        stimuli_folder(rec, None)
    write_images(tmp_path / "imgs", ["im3", "extra"])
    with pytest.raises(IdsimError, match="1 images in .* have no responses .*extra.png"):
        stimuli_folder(rec, None)
    bare = assembly.load(assembly.write(tmp_path / "bare.nc", planted_assembly(stimuli=5), rec.stimulus_ids,
                                        rec.neuroid_ids, rec.regions))
    with pytest.raises(IdsimError, match="target.stimuli is not set"):
        stimuli_folder(bare, None)


def test_trial_averaged_file_has_no_ceiling_and_refuses_a_threshold(tmp_path, compose_cfg):
    from idsim.experiment import run_experiment

    x = planted_assembly(stimuli=12)
    path = save(tmp_path, x.mean(0))
    rec = assembly.load(path)
    assert not rec.has_trials and rec.responses.shape == (1, 12, 12)
    cfg = compose_cfg(["target=recording", f"target.path={path}", "sources=[pixels]", "metric=rsa", *RUN])
    res = run_experiment(cfg, tmp_path / "run")
    assert res.scores["ceiling"].isna().all()
    bad = compose_cfg(["target=recording", f"target.path={path}", "target.min_reliability=0.8", "sources=[pixels]",
                       *RUN])
    with pytest.raises(IdsimError, match="needs single trials"):
        run_experiment(bad, tmp_path / "run2")
    assert not (tmp_path / "run2" / "scores.csv").exists()


# --------------------------------------------------------------------------- runs on recordings


def test_planted_linear_target_has_normalized_regression_score_near_one(tmp_path, compose_cfg):
    """Responses = a linear map of the `pixels` baseline's features + trial noise: ceiling-normalised r ~ 1."""
    from idsim.baselines import prepare
    from idsim.experiment import run_experiment

    ids = [f"im{i}" for i in range(150)]
    folder = write_images(tmp_path / "imgs", ids, size=16, seed=3)
    X = np.stack([prepare(Image.open(folder / f"{s}.png"), 6, gray=True).ravel() for s in ids])  # 36 features
    rng = np.random.default_rng(0)
    signal = (X - X.mean(0)) @ rng.standard_normal((X.shape[1], 20))
    signal /= signal.std(0)
    trials = signal[None] + 1.2 * rng.standard_normal((6, *signal.shape))
    path = assembly.write(tmp_path / "resp.nc", trials, ids, [f"n{j}" for j in range(20)], ["V1"] * 20,
                          attrs={"stimuli": "imgs"})
    cfg = compose_cfg(["target=recording", f"target.path={path}", "sources=[pixels]", "sources.pixels.size=6",
                       "sources.pixels.gray=true", "metric=regression", "metric.cv=loo", *RUN])
    res = run_experiment(cfg, tmp_path / "run")
    row = res.scores.iloc[0]
    assert 0.75 < row["ceiling"] < 0.95            # noisy: the raw score is well below 1...
    assert 0.93 < row["normalized_score"] < 1.07   # ...the ceiling-normalised one is ~1
    ceilings = pd.read_csv(tmp_path / "run" / "ceilings.csv")
    assert ceilings.loc[0, "n_kept"] == 20 and "sqrt" in ceilings.loc[0, "ceiling_convention"]


def test_recording_run_scores_every_region_with_ceilings(tmp_path, compose_cfg):
    from idsim.experiment import run_experiment

    x = planted_assembly(stimuli=12)
    path = save(tmp_path, x, regions=["V1"] * 4 + ["LM"] * 4 + ["AL"] * 4)
    cfg = compose_cfg(["target=recording", f"target.path={path}", "target.min_reliability=0.7",
                       "sources=[alexnet,gabor]", "sources.alexnet.layers=[features.1,features.4]", "metric=rsa",
                       "sources.gabor.size=32", *RUN, "stats.bootstrap=20"])
    res = run_experiment(cfg, tmp_path / "run")
    s = res.scores
    assert set(s.target_layer) == {"V1", "LM"}                 # AL holds only unreliable neuroids: dropped
    assert len(s) == (2 + 1) * 2 and s["ceiling"].notna().all()
    np.testing.assert_allclose(s["normalized_score"], s["score"] / s["ceiling"])
    c = pd.read_csv(tmp_path / "run" / "ceilings.csv")
    assert list(c.n_kept) == [4, 2] and list(c.n_neuroids) == [4, 4]
    assert (c.rdm_split_half < c.ceiling).all()
    assert set(res.units.target_layer) == {"V1", "LM"}
    from idsim import zoo

    boot = pd.read_csv(tmp_path / "run" / "bootstrap.csv")  # each source's best per region on 20 stimulus resamples
    assert len(boot) == 20 * 2 * 2 and set(boot.source) == {"alexnet", "gabor"}
    summ = zoo.region_summary(s, boot)
    assert (summ.ci_low <= summ.ci_high).all() and summ.ci_high.notna().all()


# --------------------------------------------------------------------------- Allen Brain Observatory NWB


def write_nwb(path, region, depth, cells, scenes=5, reps=4, seed=0, frames_per=7, session="three_session_B"):
    """A small file in the Visual Coding 2P NWB layout: dF/F, stimulus table, template, metadata."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(scenes) for _ in range(reps)])
    order = np.insert(order, 3, -1)                              # a blank presentation
    n_frames = (order.size + 2) * frames_per
    dff = 0.05 * rng.standard_normal((cells, n_frames)).astype(np.float32)
    tuning = rng.random((cells, scenes))
    starts = np.arange(order.size) * frames_per + frames_per
    for k, s in enumerate(order):
        if s >= 0:
            dff[:, starts[k]:starts[k] + frames_per] += tuning[:, s:s + 1]
    with h5py.File(path, "w") as f:
        f["general/session_type"] = np.bytes_(session)
        f["general/session_id"] = np.bytes_(str(500 + seed))
        f["general/subject/genotype"] = np.bytes_("Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt")
        f["general/optophysiology/imaging_plane_1/location"] = np.bytes_(region)
        f["general/optophysiology/imaging_plane_1/imaging depth"] = np.bytes_(f"{depth} microns")
        f[f"{allen.DFF}/data"] = dff
        f[f"{allen.DFF}/timestamps"] = np.arange(n_frames) / 30.0
        f[allen.CELL_IDS] = np.arange(cells) + 1000 * (seed + 1)
        f[f"{allen.SCENES}/data"] = order
        f[f"{allen.SCENES}/frame_duration"] = np.stack([starts, starts + frames_per], axis=1)
        f[f"{allen.TEMPLATE}/data"] = (rng.random((scenes, 24, 30)) * 255).astype(np.float32)
    return dff, order, starts, tuning


def test_nwb_loader_means_each_presentation_and_merges_files(tmp_path):
    dff, order, starts, tuning = write_nwb(tmp_path / "a.nwb", "VISp", 175, cells=3, seed=0)
    write_nwb(tmp_path / "b.nwb", "VISl", 275, cells=2, seed=1)
    one = allen.read_session(tmp_path / "a.nwb")
    assert one.responses.shape == (4, 5, 3) and list(one.scenes) == [0, 1, 2, 3, 4]
    k = int(np.flatnonzero(order == 2)[1])                          # the second trial of scene 2
    np.testing.assert_allclose(one.responses[1, 2], dff[:, starts[k]:starts[k] + 7].mean(1), rtol=1e-5)
    win = allen.read_session(tmp_path / "a.nwb", window=(0.0, 0.1))  # frames in [onset, onset + 100 ms): 3
    np.testing.assert_allclose(win.responses[1, 2], dff[:, starts[k]:starts[k] + 3].mean(1), rtol=1e-5)
    rec = allen.read([tmp_path / "a.nwb", tmp_path / "b.nwb"])
    assert rec.responses.shape == (4, 5, 5) and rec.region_names() == ["VISp", "VISl"]
    assert list(rec.neuroid_coords["depth_um"]) == [175.0] * 3 + [275.0] * 2
    assert rec.neuroid_coords["cre_line"][0] == "Cux2-CreERT2/wt"
    r = split_half_reliability(rec.responses, splits=4)
    assert (r > 0.9).all()


def test_convert_allen_command_writes_the_format(tmp_path):
    from idsim.recordings.__main__ import main

    write_nwb(tmp_path / "a.nwb", "VISp", 175, cells=3)
    assert main(["convert-allen", str(tmp_path / "a.nwb"), "--out", str(tmp_path / "resp.nc")]) == 0
    rec = assembly.load(tmp_path / "resp.nc")
    assert rec.responses.shape == (4, 5, 3) and rec.stimulus_ids == ["0", "1", "2", "3", "4"]
    probe = stimuli_folder(rec, None)
    assert len(probe) == 5 and probe.image(0).size == (30, 24)
    assert main(["convert-allen", str(tmp_path / "missing.nwb"), "--out", str(tmp_path / "x.nc")]) == 2


def test_nwb_errors_are_one_line(tmp_path):
    write_nwb(tmp_path / "a.nwb", "VISp", 175, cells=3)
    with h5py.File(tmp_path / "a.nwb", "a") as f:
        del f[f"{allen.SCENES}/data"]
    with pytest.raises(IdsimError, match="no natural-scenes stimulus table"):
        allen.read([tmp_path / "a.nwb"])
    write_nwb(tmp_path / "b.nwb", "VISp", 175, cells=3, scenes=5)
    write_nwb(tmp_path / "c.nwb", "VISl", 175, cells=3, scenes=4, seed=2)
    with pytest.raises(IdsimError, match="must show the same scenes"):
        allen.read([tmp_path / "b.nwb", tmp_path / "c.nwb"])


def test_allen_target_runs(tmp_path, compose_cfg):
    from idsim.experiment import run_experiment

    write_nwb(tmp_path / "a.nwb", "VISp", 175, cells=4, scenes=6)
    write_nwb(tmp_path / "b.nwb", "VISl", 275, cells=3, scenes=6, seed=1)
    cfg = compose_cfg(["target=allen", f"target.nwb=[{tmp_path / 'a.nwb'},{tmp_path / 'b.nwb'}]",
                       "target.min_reliability=0.5", "sources=[pixels,gabor]", "metric=regression_loo", *RUN])
    res = run_experiment(cfg, tmp_path / "run")
    assert set(res.scores.target_layer) == {"VISp", "VISl"}
    assert res.scores["ceiling"].notna().all() and (res.scores["dataset"] == "allen_scenes").all()


def test_recording_config_keys(compose_cfg):
    from idsim.config import check_overrides

    check_overrides(["target=recording", "target.path=x.nc", "target.min_reliability=0.8", "target.splits=4"])
    check_overrides(["target=allen", "target.nwb=[a.nwb]", "target.window=[0,0.5]"])
    for bad, msg in ((["target=recording", "target.pth=x"], "did you mean target.path"),
                     (["target=recording", "target.min_reliability=2"], "a number in \\[-1, 1\\]"),
                     (["target=allen", "target.window=[1,0]"], "start < end"),
                     (["target.recording.nosie=poisson"], "did you mean target.recording.noise"),
                     (["sources=[alexnet,gabor]", "sources.gabor.grid=0"], "an integer >= 1")):
        with pytest.raises(IdsimError, match=msg):
            check_overrides(bad)
    cfg = compose_cfg(["target=recording", "target.path=x.nc"])
    assert cfg.target.kind == "recording" and cfg.target.path == "x.nc"
    from idsim import schema

    with pytest.raises(IdsimError, match="target.path is not set"):
        schema.load(compose_cfg(["target=recording"]))
    with pytest.raises(IdsimError, match="unknown target model 'gabor'"):  # baselines are sources only
        check_overrides(["target=gabor"])


def test_public_api():
    assert recordings.split_half_reliability is split_half_reliability
    assert callable(recordings.load) and callable(recordings.write)
