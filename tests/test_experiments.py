"""The papers' analyses (experiments/): statistics and tables on synthetic score tables, the command
line, and the quick variants end to end (CKA Fig. 3 in the default suite, the others marked slow)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import models as M
from experiments import mouse, sysid
from experiments.common import (bootstrap_ci, max_over_layers, parse_dataset, relative_depth, smoothed_trend,
                                welch_test)
from experiments.run import ANALYSES, main, quick_probe_sets, run
from idsim.errors import IdsimError

ROOT = Path(__file__).resolve().parent.parent


def fake_scores(targets=("alexnet", "resnet18"), sources=("alexnet", "resnet18", "vit"), n_layers=4, seed=0,
                **extra) -> pd.DataFrame:
    """A scores.csv-like table: the same architecture scores highest at the matching layer."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in targets:
        for s in sources:
            for i in range(n_layers):
                for j in range(n_layers):
                    same = s == t
                    score = 0.3 + 0.1 * rng.random() + (0.5 if same and i == j else 0.0)
                    rows.append({"source": s, "source_layer": f"l{i}", "source_layer_index": i, "target": t,
                                 "target_layer": f"l{j}", "target_layer_index": j, "metric": "cka", "score": score,
                                 "same_architecture": same, "source_weights": "random", "source_seed": 1, **extra})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- sysid tables and statistics


def test_layer_and_top_scores_mark_the_matching_layer_and_the_winner():
    layers = sysid.layer_scores(fake_scores())
    assert layers["matching_layer"].sum() == 2 * 4      # per target: 4 layers of its own architecture
    assert (layers.loc[layers["matching_layer"], "source"] == layers.loc[layers["matching_layer"], "target"]).all()
    top = sysid.top_scores(layers)
    assert len(top) == 2 * 4 * 3                          # target x target layer x source
    assert top.groupby(["target", "target_layer"])["winner"].sum().eq(1).all()
    assert top["correct"].all()                           # the fake's own architecture wins everywhere
    win = top[top["winner"]]
    assert (win["source"] == win["target"]).all() and (win["best_source_layer"] == win["target_layer"]).all()
    # top score = max over source layers
    raw = fake_scores()
    expect = raw.groupby(["target", "target_layer", "source"])["score"].max()
    got = top.set_index(["target", "target_layer", "source"])["score"]
    pd.testing.assert_series_equal(got.sort_index(), expect.sort_index(), check_names=False)


def test_top_scores_flags_a_wrong_winner():
    raw = fake_scores(targets=("alexnet",))
    raw.loc[(raw["source"] == "vit") & (raw["target_layer"] == "l2"), "score"] = 5.0
    top = sysid.top_scores(sysid.layer_scores(raw))
    correct = top.drop_duplicates("target_layer").set_index("target_layer")["correct"]
    assert not correct["l2"] and correct.drop("l2").all()


def test_layer_scores_names_missing_columns():
    with pytest.raises(IdsimError, match="lacks column"):
        sysid.layer_scores(fake_scores().drop(columns=["score"]))


def test_welch_test_matches_scipy_and_class_stats():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.05, 11), rng.normal(0.5, 0.2, 8)
    t, p = welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert np.isnan(welch_test([1.0], b)[1])
    # class_stats over a synthetic Fig. 6 table: one clearly separated layer, one not
    rows = []
    for k, layer in enumerate(("sep", "mix")):
        for i, v in enumerate(a):
            rows.append({"target": "vgg13", "target_layer": layer, "target_layer_index": k, "source": f"c{i}",
                         "score": v if layer == "sep" else b[i % len(b)] + 0.001 * i, "model_class": M.CLASS_CNN,
                         "target_class": M.CLASS_CNN})
        for i, v in enumerate(b):
            rows.append({"target": "vgg13", "target_layer": layer, "target_layer_index": k, "source": f"t{i}",
                         "score": v if layer == "sep" else v, "model_class": M.CLASS_TRANSFORMER,
                         "target_class": M.CLASS_CNN})
    st = sysid.class_stats(pd.DataFrame(rows)).set_index("target_layer")
    assert st.loc["sep", "p_value"] == pytest.approx(ref.pvalue)
    assert st.loc["sep", "mean_CNN"] == pytest.approx(a.mean())
    assert st.loc["sep", "sd_CNN"] == pytest.approx(a.std(ddof=1))
    assert st.loc["sep", "n_CNN"] == 11 and st.loc["sep", "n_transformer"] == 8
    assert (st["significant"] == (st["p_value"] < 0.01)).all()
    assert st.loc["sep", "significant"] == (ref.pvalue < 0.01) and not st.loc["mix", "significant"]


def test_fig6_model_lists_are_the_papers():
    assert len(M.FIG6_CNNS) == 12 and len(M.FIG6_TRANSFORMERS) == 8
    assert set(M.T2T_SUBSTITUTES.values()) <= set(M.FIG6_TRANSFORMERS)
    sweeps = sysid.plan_fig6(False, ["dataset=natural"], "imagenet")
    assert [s.name for s in sweeps] == [f"target_{t}" for t in M.FIG6_TARGETS]
    for s in sweeps:
        target = s.overrides[0].split("=")[1]
        sources = s.overrides[1].split("=", 1)[1].strip("[]").split(",")
        assert target not in sources and len(sources) == 19   # the target's own architecture excluded
    assert [s.meta["target_class"] for s in sweeps] == [M.CLASS_CNN, M.CLASS_CNN, M.CLASS_TRANSFORMER]


def test_identifiability_curve():
    ident = pd.DataFrame({"target": ["a"] * 4, "unit_ratio": [0.01, 0.01, 1.0, 1.0],
                          "identifiability_index": [0.1, 0.3, 0.5, 0.7], "correct": [True, False, True, True]})
    c = sysid.identifiability_curve(ident).set_index("unit_ratio")
    assert c.loc[0.01, "mean_identifiability_index"] == pytest.approx(0.2)
    assert c.loc[0.01, "fraction_correct"] == 0.5 and c.loc[1.0, "fraction_correct"] == 1.0


# --------------------------------------------------------------------------- mouse statistics


def test_relative_depth_spans_zero_to_one():
    df = fake_scores(n_layers=5)
    d = relative_depth(df, ["target"])
    assert d.between(0, 1).all()
    assert (d[df["source_layer_index"] == 0] == 0).all() and (d[df["source_layer_index"] == 4] == 1).all()
    best = max_over_layers(df, [])
    assert best["best_layer_relative_depth"].between(0, 1).all()
    # one-layer model: depth 0, not NaN
    assert relative_depth(fake_scores(n_layers=1), ["target"]).eq(0).all()


def test_bootstrap_ci_contains_the_mean():
    x = np.random.default_rng(2).normal(0.3, 0.1, 12)
    lo, hi = bootstrap_ci(x)
    assert lo < x.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci([0.4]) == (0.4, 0.4)


def test_smoothed_trend_follows_the_data():
    x = np.linspace(0, 1, 200)
    gx, gy = smoothed_trend(x, np.full_like(x, 0.7))
    assert np.allclose(gy, 0.7)
    gx, gy = smoothed_trend(x, x, span=0.2)
    assert np.all(np.diff(gy) > 0) and gx[0] == 0 and gx[-1] == 1
    with pytest.raises(IdsimError):
        smoothed_trend([np.nan], [1.0])


def mouse_scores() -> pd.DataFrame:
    """Two variants, two metrics; regression is a monotone function of RSA (rankings agree exactly)."""
    parts = []
    for seed, variant_shift in ((2, 0.0), (3, 0.05)):
        rsa = fake_scores(targets=("brain",), sources=("a", "b", "c", "d"), n_layers=4, seed=seed)
        rsa["source_seed"] = seed
        rsa["score"] += variant_shift
        reg = rsa.assign(metric="regression_loo", score=rsa["score"] ** 2 / 2)
        parts += [rsa.assign(metric="rsa"), reg]
    return pd.concat(parts, ignore_index=True)


def test_mouse_tables(tmp_path):
    df = mouse.tidy(mouse_scores())
    assert set(df["variant"]) == {"random seed 2", "random seed 3"}
    best = mouse.layer_max(df)
    assert len(best) == 2 * 2 * 4 * 4                     # metric x variant x model x target layer
    assert best["best_layer_relative_depth"].between(0, 1).all()
    summ = mouse.model_summary(best)
    assert ((summ["ci_low"] <= summ["score"]) & (summ["score"] <= summ["ci_high"])).all()
    agree = mouse.metric_agreement(best, df).set_index("variants")
    ranking = agree[agree["level"].str.startswith("model ranking")]
    assert ranking.loc["all variants", "spearman_r"] == pytest.approx(1.0)
    layer = agree[agree["level"].str.startswith("layer by layer")].iloc[0]
    assert layer["spearman_r"] == pytest.approx(1.0) and layer["n"] == 2 * 4 * 4
    files = mouse.analyze(mouse_scores(), tmp_path)
    assert all(p.exists() for p in files.values())
    with pytest.raises(IdsimError, match="needs both"):
        mouse.metric_agreement(best, df[df["metric"] == "rsa"])


# --------------------------------------------------------------------------- command line


def test_parse_dataset():
    assert parse_dataset("imagenet dataset.root=/d/val") == ("imagenet", ["dataset=imagenet", "dataset.root=/d/val"])
    for bad in ("", "dataset.root=/x", "imagenet root"):
        with pytest.raises(IdsimError):
            parse_dataset(bad)


@pytest.mark.parametrize("argv, message", [
    (["fig9"], "unknown analysis 'fig9'"),
    (["fig3", "--quick", "--weights", "imagenet"], "--quick runs random weights only"),
    (["fig3", "--datasets", "shapes"], "--datasets is for fig5"),
    (["fig5", "--dataset", "shapes"], "--datasets"),
    (["fig3", "--dataset", "imagenet root"], "not a key=value"),
])
def test_bad_command_lines_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("idsim: error: ") and message in err and "\n" not in err


def test_dry_run_prints_every_sweep_with_the_extra_overrides(tmp_path, capsys):
    for analysis in ANALYSES:
        assert run([analysis, "--quick", "--dry-run", "--out", str(tmp_path), "--", "hydra/launcher=local"]) == {}
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert len(out) == 1 + 1 + 1 + len(quick_probe_sets()) + len(M.QUICK_FIG6_TARGETS) + 1
    assert all(line.endswith("hydra/launcher=local") and " -m " in line for line in out)
    assert all("weights=random" in line for line in out)
    if (ROOT / "conf" / "dataset" / "texture_noise.yaml").exists():
        assert any("dataset=texture_noise" in line for line in out)


def test_full_variants_use_pretrained_weights_and_the_papers_models(capsys):
    run(["fig2", "--dry-run", "--out", "/tmp/unused"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("$ ")]
    assert len(lines) == 2 and all("weights=imagenet" in x for x in lines)
    assert "identical_weights=true" in lines[1] and "target=mixer_b16_224" in lines[1]
    assert all(f"sources=[{','.join(M.PAPER_FIVE)}]" in x for x in lines)


# --------------------------------------------------------------------------- quick variants end to end


def _quick(analysis: str, out: Path) -> dict[str, Path]:
    files = run([analysis, "--quick", "--out", str(out)])
    assert all(Path(p).exists() and Path(p).stat().st_size > 0 for p in files.values())
    jobs = pd.read_csv(files["jobs"])
    assert (jobs["state"] == "done").all()
    return files


def test_quick_fig3_cka(tmp_path):
    files = _quick("fig3", tmp_path)
    layers, top = pd.read_csv(files["layer_scores"]), pd.read_csv(files["top_scores"])
    assert set(layers["target"]) == set(M.QUICK_TARGETS) and set(layers["source"]) == set(M.QUICK_SOURCES)
    assert (layers["metric"] == "cka").all() and layers["score"].between(0, 1 + 1e-9).all()
    assert layers.groupby("target")["matching_layer"].sum().gt(0).all()
    assert len(top) == layers.drop_duplicates(["target", "target_layer"]).shape[0] * len(M.QUICK_SOURCES)
    assert files["figure"].suffix == ".png"


@pytest.mark.slow
def test_quick_fig2_regression(tmp_path):
    files = _quick("fig2", tmp_path)
    layers = pd.read_csv(files["layer_scores"])
    assert (layers["metric"] == "regression").all() and layers["score"].between(-1, 1).all()


@pytest.mark.slow
def test_quick_fig4_unit_ratio(tmp_path):
    files = _quick("fig4", tmp_path)
    assert set(pd.read_csv(files["layer_scores"])["unit_ratio"]) == {0.01}
    curve = pd.read_csv(files["curve_table"])
    assert sorted(set(curve["unit_ratio"])) == [0.01, 0.1, 1.0] and set(curve["target"]) == set(M.QUICK_TARGETS)
    assert curve["fraction_correct"].between(0, 1).all()


@pytest.mark.slow
def test_quick_fig5_probe_sets(tmp_path):
    files = _quick("fig5", tmp_path)
    table = pd.read_csv(files["table"])
    assert set(table["probe_set"]) == {parse_dataset(s)[0] for s in quick_probe_sets()}
    assert table["identifiability_index"].between(-1, 1).all()


@pytest.mark.slow
def test_quick_fig6_conv_vs_attention(tmp_path):
    files = _quick("fig6", tmp_path)
    best, st = pd.read_csv(files["max_cka"]), pd.read_csv(files["stats"])
    assert set(best["model_class"]) == {M.CLASS_CNN, M.CLASS_TRANSFORMER}
    for _, r in st.iterrows():
        d = best[(best["target"] == r["target"]) & (best["target_layer"] == r["target_layer"])]
        ref = stats.ttest_ind(d.loc[d["model_class"] == "CNN", "score"], d.loc[d["model_class"] == "transformer",
                              "score"], equal_var=False)
        assert r["p_value"] == pytest.approx(ref.pvalue) and r["significant"] == (ref.pvalue < 0.01)
    for t in M.QUICK_FIG6_TARGETS:
        assert t not in set(best.loc[best["target"] == t, "source"])


@pytest.mark.slow
def test_quick_mouse(tmp_path):
    files = _quick("mouse", tmp_path)
    best = pd.read_csv(files["max_over_layers"])
    assert set(best["metric"]) == set(mouse.METRICS) and best["variant"].nunique() == 2
    assert best["best_layer_relative_depth"].between(0, 1).all()
    summ = pd.read_csv(files["model_summary"])
    assert ((summ["ci_low"] <= summ["score"] + 1e-12) & (summ["score"] <= summ["ci_high"] + 1e-12)).all()
    assert pd.read_csv(files["metric_agreement"])["spearman_r"].between(-1, 1).all()


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "experiments.run", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and all(a in out.stdout for a in ANALYSES)


def test_a_sweep_whose_jobs_all_fail_stops_the_analysis(tmp_path, capsys):
    # unit_ratio=7 fails in every job before any forward pass
    assert main(["fig3", "--quick", "--out", str(tmp_path / "b"), "--", "unit_ratio=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("idsim: error: sweep 'scores': no job finished") and "jobs.csv" in err


def test_quick_mouse_pins_the_target_and_the_images():
    (sweep,) = mouse.plan(True, ["dataset=natural"])
    o = sweep.overrides
    assert "seed=1,2" in o and "target.seed=0" in o and "dataset.seed=0" in o and "metric=rsa,regression_loo" in o
    assert f"target={M.QUICK_MOUSE_TARGET}" in o
    (full,) = mouse.plan(False, ["dataset=allen_scenes", "dataset.root=/x"])
    assert "weights=imagenet,random" in full.overrides and "target.weights=imagenet" in full.overrides
    assert not any(x.startswith("dataset.seed") for x in full.overrides)
    sources = next(x for x in full.overrides if x.startswith("sources="))
    assert M.MOUSE_TARGET not in sources and f"target={M.MOUSE_TARGET}" in full.overrides
