"""The papers' analyses (conf/experiment/*.yaml + experiments/): the statistics and tables on synthetic
score tables; every experiment config composes and names an importable analysis; the quick variants end
to end as ``python run.py -m experiment=<name>_quick`` (fig3 in the default suite, the others slow)."""
from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats

from experiments import mouse, sysid
from experiments.common import bootstrap_ci, max_over_layers, relative_depth, smoothed_trend, welch_test
from idsim.errors import IdsimError
from idsim.sweep import SweepSummary

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
ANALYSES = sorted({n.removesuffix("_quick") for n in EXPERIMENTS})
# what the user gives on the command line for the full variants on real recordings (README: Recordings as targets)
USER = {"mouse_recording": ["target.nwb=[VISp_175.nwb,VISl_275.nwb]"]}
BASELINES = ("gabor", "gist", "rff", "pixels")


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
                    rows.append({"job": f"target={t}", "source": s, "source_layer": f"l{i}", "source_layer_index": i,
                                 "target": t, "target_layer": f"l{j}", "target_layer_index": j, "metric": "cka",
                                 "score": score, "same_architecture": same, "source_weights": "random",
                                 "source_seed": 1, **extra})
    return pd.DataFrame(rows)


def fake_summary(tmp_path: Path, scores: pd.DataFrame, ident: pd.DataFrame | None = None,
                 swept=("target",)) -> SweepSummary:
    jobs = pd.DataFrame({"job": sorted(set(scores["job"])), "state": "done"}) if len(scores) else \
        pd.DataFrame({"job": ["target=x"], "state": ["failed"]})
    if ident is None:
        top = sysid.top_scores(sysid.layer_scores(scores)) if len(scores) else pd.DataFrame()
        ident = top[top["winner"]].assign(identifiability_index=0.1) if len(top) else pd.DataFrame()
    return SweepSummary(sweep_dir=tmp_path, out_dir=tmp_path / "summary", jobs=jobs, scores=scores,
                        identifiability=ident, swept=list(swept), figures={})


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
                         "score": v if layer == "sep" else b[i % len(b)] + 0.001 * i, "model_class": sysid.CLASS_CNN,
                         "target_class": sysid.CLASS_CNN})
        for i, v in enumerate(b):
            rows.append({"target": "vgg13", "target_layer": layer, "target_layer_index": k, "source": f"t{i}",
                         "score": v, "model_class": sysid.CLASS_TRANSFORMER, "target_class": sysid.CLASS_CNN})
    st = sysid.class_stats(pd.DataFrame(rows)).set_index("target_layer")
    assert st.loc["sep", "p_value"] == pytest.approx(ref.pvalue)
    assert st.loc["sep", "welch_t"] == pytest.approx(ref.statistic)
    assert st.loc["sep", "mean_CNN"] == pytest.approx(a.mean())
    assert st.loc["sep", "sd_CNN"] == pytest.approx(a.std(ddof=1))
    assert st.loc["sep", "sd_transformer"] == pytest.approx(b.std(ddof=1))
    assert st.loc["sep", "n_CNN"] == 11 and st.loc["sep", "n_transformer"] == 8
    assert (st["significant"] == (st["p_value"] < 0.01)).all()
    assert st.loc["sep", "significant"] == (ref.pvalue < 0.01) and not st.loc["mix", "significant"]
    assert st.loc["sep", "own_class_higher"] == (a.mean() > b.mean())


def test_conv_vs_attention_leaves_out_the_targets_own_architecture():
    cnns, vits = ["alexnet", "resnet18", "squeezenet1_0"], ["vit_tiny_patch16_224", "deit_tiny_patch16_224"]
    scores = fake_scores(targets=("resnet18", "deit_tiny_patch16_224"), sources=(*cnns, *vits, "mystery_net"))
    best, st = sysid.conv_vs_attention(scores)
    for t in ("resnet18", "deit_tiny_patch16_224"):
        assert t not in set(best.loc[best["target"] == t, "source"])
    assert set(best["model_class"]) == {"CNN", "transformer", "other"}
    assert best.groupby("target")["target_class"].first().to_dict() == {"resnet18": "CNN",
                                                                         "deit_tiny_patch16_224": "transformer"}
    # per target layer: 2 CNNs and 2 transformers (own architecture and the unknown model left out)
    assert set(st.loc[st["target"] == "resnet18", "n_CNN"]) == {2}
    assert set(st.loc[st["target"] == "deit_tiny_patch16_224", "n_transformer"]) == {1}
    # max over source layers
    ref = scores[scores["source"] == "alexnet"].groupby(["target", "target_layer"])["score"].max()
    got = best[best["source"] == "alexnet"].set_index(["target", "target_layer"])["score"]
    pd.testing.assert_series_equal(got.sort_index(), ref.sort_index(), check_names=False)


def test_identifiability_curve():
    ident = pd.DataFrame({"target": ["a"] * 4, "unit_ratio": [0.01, 0.01, 1.0, 1.0],
                          "identifiability_index": [0.1, 0.3, 0.5, 0.7], "correct": [True, False, True, True]})
    c = sysid.identifiability_curve(ident).set_index("unit_ratio")
    assert c.loc[0.01, "mean_identifiability_index"] == pytest.approx(0.2)
    assert c.loc[0.01, "fraction_correct"] == 0.5 and c.loc[1.0, "fraction_correct"] == 1.0


def test_analyses_over_a_summary(tmp_path):
    """fig3/fig4/fig5 over synthetic summaries: the files, the rows they keep, and one-line errors."""
    files = sysid.fig3(fake_summary(tmp_path, fake_scores()), tmp_path / "a")
    assert {p.name for p in files.values()} == {"fig3.png", "fig3_layer_scores.csv", "fig3_top_scores.csv"}
    assert all(p.stat().st_size > 0 for p in files.values())
    # fig4: the panels keep unit_ratio 0.01 only; the curve has every ratio
    scores = pd.concat([fake_scores(unit_ratio=r).assign(job=lambda d, r=r: d["job"] + f",unit_ratio={r}")
                        for r in (0.01, 1.0)], ignore_index=True)
    top = sysid.top_scores(sysid.layer_scores(scores), by=["unit_ratio"])
    ident = top[top["winner"]].assign(identifiability_index=0.2)
    files = sysid.fig4(fake_summary(tmp_path, scores, ident, ["target", "unit_ratio"]), tmp_path / "b")
    assert set(pd.read_csv(files["layer_scores"])["unit_ratio"]) == {0.01}
    assert sorted(set(pd.read_csv(files["curve_table"])["unit_ratio"])) == [0.01, 1.0]
    with pytest.raises(IdsimError, match="unit_ratio=0.01"):
        sysid.fig4(fake_summary(tmp_path, scores[scores["unit_ratio"] == 1.0], ident), tmp_path / "c")
    # fig5: the probe set is the swept dataset choice
    ident = ident.assign(dataset=np.where(ident["unit_ratio"] == 0.01, "shapes", "texture_noise_quick"))
    files = sysid.fig5(fake_summary(tmp_path, scores, ident, ["target", "dataset"]), tmp_path / "d")
    assert set(pd.read_csv(files["table"])["probe_set"]) == {"shapes", "texture_noise_quick"}
    # a sweep with no finished job
    with pytest.raises(IdsimError, match="no job of the sweep"):
        sysid.fig3(fake_summary(tmp_path, fake_scores().iloc[:0]), tmp_path / "e")


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
    files = mouse.analyze(fake_summary(tmp_path, mouse_scores(), swept=["seed", "metric"]), tmp_path)
    assert all(p.exists() for p in files.values())
    regions = pd.read_csv(files["max_over_layers"])         # a network target: no ceilings, no bootstrap table
    assert len(regions) == len(best) and "ceiling" not in regions and regions["ci_low"].isna().all()
    assert set(pd.read_csv(files["groups"])["group"]) == {"random"} and "ceilings" not in files
    with pytest.raises(IdsimError, match="needs both"):
        mouse.metric_agreement(best, df[df["metric"] == "rsa"])


REGIONS = ("VISp", "VISl", "VISal")
CEILINGS = {"rsa": (0.8, 0.7, 0.6), "regression_loo": (0.9, 0.85, 0.5)}


def recording_summary(tmp_path: Path, n_resamples: int = 40) -> SweepSummary:
    """A recording sweep (regions VISp/VISl/VISal with ceilings) of ``metric`` x ``weights``: networks a, b, c
    (4 layers) trained and random, and the four baselines (1 layer) in both weights jobs, scored differently in
    the second (as with another bootstrap seed); its bootstrap table and the jobs' ceilings.csv."""
    rng = np.random.default_rng(5)
    scores, boots, jobs = [], [], []
    for metric in ("regression_loo", "rsa"):                 # the summary's order: jobs sorted by folder name
        for weights in ("imagenet", "random"):
            job = f"metric={metric},weights={weights}"
            models = [(n, weights, None if weights == "imagenet" else 1, 4) for n in ("a", "b", "c")]
            models += [(n, "baseline", 1 if n == "rff" else None, 1) for n in BASELINES]
            for source, w, seed, n_layers in models:
                for j, region in enumerate(REGIONS):
                    ceiling = CEILINGS[metric][j]
                    for i in range(n_layers):
                        score = rng.uniform(-0.1, 0.6)
                        scores.append({"job": job, "weights": weights, "source": source, "source_layer": f"l{i}",
                                       "target": "allen", "target_layer": region, "metric": metric, "score": score,
                                       "source_layer_index": i, "target_layer_index": j, "ceiling": ceiling,
                                       "normalized_score": score / ceiling, "same_architecture": False,
                                       "source_weights": w, "source_seed": seed})
                    for r in range(n_resamples):
                        boots.append({"job": job, "weights": weights, "resample": r, "target_layer": region,
                                      "target_layer_index": j, "score": rng.uniform(-0.1, 0.6), "metric": metric,
                                      "source": source, "target": "allen", "source_weights": w, "source_seed": seed})
            folder = tmp_path / "sweep" / job
            folder.mkdir(parents=True)
            pd.DataFrame({"target_layer": REGIONS, "n_neuroids": 50, "n_kept": [40 + 10 * (metric == "rsa"), 30, 20],
                          "ceiling": CEILINGS[metric]}).to_csv(folder / "ceilings.csv", index=False)
            jobs.append({"job": job, "metric": metric, "weights": weights, "state": "done",
                         "status_file": str(folder / "status.json")})
    return SweepSummary(sweep_dir=tmp_path / "sweep", out_dir=tmp_path / "sweep" / "summary", jobs=pd.DataFrame(jobs),
                        scores=pd.DataFrame(scores), identifiability=pd.DataFrame(), swept=["metric", "weights"],
                        figures={}, bootstrap=pd.DataFrame(boots))


def test_mouse_analysis_of_a_recording(tmp_path):
    """Per region: the max over layers, its CI over stimuli, ceilings and normalised scores, the groups and the
    RSA vs regression rank agreement are the hand-computed ones; a baseline scored in both jobs counts once."""
    summary = recording_summary(tmp_path)
    files = mouse.analyze(summary, tmp_path / "analysis")
    assert {"max_over_layers", "groups", "rank_agreement", "ceilings", "regions", "rankings", "depth"} <= set(files)
    assert all(p.stat().st_size > 0 for p in files.values())
    best = pd.read_csv(files["max_over_layers"])
    # the expected: each model's rows of its first job (the baselines' of weights=imagenet), max over layers
    raw = summary.scores.assign(variant=lambda d: np.where(d["source_weights"] == "random", "random seed 1",
                                                           d["source_weights"]))
    raw = raw[(raw["source_weights"] != "baseline") | raw["job"].str.endswith("imagenet")]
    keys = ["metric", "variant", "source", "target_layer"]
    expect = raw.loc[raw.groupby(keys)["score"].idxmax()].set_index(keys)
    got = best.set_index(keys).sort_index()
    assert len(got) == len(expect) == 2 * 3 * (3 + 3 + 4) and not got.index.duplicated().any()
    assert np.allclose(got["score"], expect.loc[got.index, "score"])
    assert (got["best_layer"] == expect.loc[got.index, "source_layer"]).all()
    net = got["source_weights"] != "baseline"
    assert np.allclose(got.loc[net, "best_layer_relative_depth"], expect.loc[got.index[net], "source_layer_index"] / 3)
    assert got.loc[~net, "best_layer_relative_depth"].isna().all()          # one-layer sources have no depth
    # ceilings and normalised scores, the neuroids kept (each metric's own ceilings.csv)
    ceiling = {(m, r): c for m, cs in CEILINGS.items() for r, c in zip(REGIONS, cs)}
    assert np.allclose(got["ceiling"], [ceiling[m, r] for m, r in zip(got.index.get_level_values(0),
                                                                      got.index.get_level_values(3))])
    assert np.allclose(got["normalized_score"], got["score"] / got["ceiling"])
    assert np.allclose(got["normalized_ci_high"], got["ci_high"] / got["ceiling"])
    assert got.xs("VISp", level="target_layer")["n_neuroids"].groupby("metric").first().to_dict() == \
        {"regression_loo": 40, "rsa": 50}
    # CI over stimuli: percentiles of the kept job's per-resample best scores
    boot = summary.bootstrap
    for source, variant, job in (("b", "imagenet", "metric=rsa,weights=imagenet"),
                                 ("gist", "baseline", "metric=rsa,weights=imagenet"),
                                 ("c", "random seed 1", "metric=rsa,weights=random")):
        x = boot[(boot["job"] == job) & (boot["source"] == source) & (boot["target_layer"] == "VISl")]["score"]
        row = got.loc[("rsa", variant, source, "VISl")]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(np.quantile(x, [0.025, 0.975])))
    # baselines vs trained vs random: the mean over models of the max, per region
    groups = pd.read_csv(files["groups"]).set_index(["metric", "target_layer", "group"])
    assert set(groups.index.get_level_values("group")) == {"baseline", "trained", "random"}
    g = groups.loc[("regression_loo", "VISal", "baseline")]
    assert g["n_models"] == 4 and g["ceiling"] == 0.5
    assert g["score"] == pytest.approx(got.loc[("regression_loo", "baseline", slice(None), "VISal"), "score"].mean())
    assert g["ci_low"] <= g["score"] <= g["ci_high"]
    # RSA vs regression: Spearman of the two rankings of the 10 models, per region and of the mean over regions
    ranks = pd.read_csv(files["rank_agreement"])
    wide = got["score"].unstack("metric")
    for region in REGIONS:
        w = wide.xs(region, level="target_layer")
        row = ranks[(ranks["models"] == "all models") & (ranks["target_layer"] == region)].iloc[0]
        assert row["n_models"] == 10
        assert row["spearman_r"] == pytest.approx(stats.spearmanr(w["rsa"], w["regression_loo"])[0])
    mean = wide.groupby(["variant", "source"]).mean()
    row = ranks[(ranks["models"] == "all models") & (ranks["target_layer"] == "mean over regions")].iloc[0]
    assert row["spearman_r"] == pytest.approx(stats.spearmanr(mean["rsa"], mean["regression_loo"])[0])
    assert set(ranks["models"]) == {"all models", "imagenet", "random seed 1", "baseline"}


# --------------------------------------------------------------------------- the experiment configs


def test_every_analysis_has_a_quick_and_a_full_variant():
    assert ANALYSES == ["fig2", "fig3", "fig4", "fig5", "fig6", "mouse", "mouse_recording"]
    assert EXPERIMENTS == sorted([*ANALYSES, *(f"{a}_quick" for a in ANALYSES)])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_names_its_analysis(name):
    """Composes like ``python run.py experiment=<name>`` (the sweep's first job without its swept values),
    validates, every swept value passes the command-line check, and ``analysis`` is importable."""
    from hydra.utils import get_method

    from idsim import schema
    from idsim.config import check_overrides, compose

    raw = OmegaConf.load(ROOT / "conf" / "experiment" / f"{name}.yaml")
    assert raw.hydra.sweep.dir == f"outputs/experiments/{name}"
    params = {str(k): str(v) for k, v in raw.hydra.sweeper.params.items()}
    assert params, "an analysis is a sweep"
    user = USER.get(name, [])
    check_overrides([f"experiment={name}", *user, *(f"{k}={v}" for k, v in params.items())])
    cfg = compose([f"experiment={name}", *user])
    run = schema.load(cfg)
    draw = get_method(cfg.analysis)
    assert list(inspect.signature(draw).parameters) == ["summary", "out_dir"]
    if name.endswith("_quick"):
        assert run.weights == "random" and 16 <= run.dataset.n_images <= 32 and run.logger.kind == "none"
        assert run.extraction.batch_size == run.dataset.n_images and not run.plots
    else:
        assert "imagenet" in (run.weights, getattr(run.target, "weights", None), *params.get("weights", "").split(","))


def test_mouse_recording_configs():
    """The full variant takes the user's recording on the command line (Allen NWB files, or a recording file and
    its stimuli) and says in one line what is missing; the quick one is a simulated recording with baselines."""
    from idsim import schema
    from idsim.config import check_overrides, compose

    sweep = ["weights=imagenet,random", "metric=rsa,regression_loo"]
    for user, kind in ((USER["mouse_recording"], "AllenConfig"),
                       (["target=recording", "target.path=resp.nc", "target.stimuli=resp_stimuli"], "RecordingConfig")):
        check_overrides(["experiment=mouse_recording", *user, *sweep])
        run = schema.load(compose(["experiment=mouse_recording", *user]))
        assert type(run.target).__name__ == kind and run.target.min_reliability == 0.8
        assert set(BASELINES) <= set(run.sources) and len(run.sources) > len(BASELINES)
    with pytest.raises(IdsimError, match="target.nwb"):
        schema.load(compose(["experiment=mouse_recording"]))
    with pytest.raises(IdsimError, match="target.path"):   # a recording file is target=recording's
        check_overrides(["experiment=mouse_recording", "target.path=resp.nc"])
    run = schema.load(compose(["experiment=mouse_recording_quick"]))
    rec = run.target.recording
    assert rec.trials >= 2 and rec.noise == "poisson" and rec.neurons and rec.min_reliability == 0.8
    assert rec.seed == run.target.seed == run.dataset.seed == 0
    assert set(BASELINES) <= set(run.sources) and len(run.sources) - len(BASELINES) >= 2
    params = OmegaConf.load(ROOT / "conf" / "experiment" / "mouse_recording_quick.yaml").hydra.sweeper.params
    assert str(params.metric) == "rsa,regression_loo" and len(str(params.seed).split(",")) == 2


# --------------------------------------------------------------------------- quick variants end to end


def _run_quick(name: str, sweep_dir: Path) -> dict[str, Path]:
    """``python run.py -m experiment=<name>`` into ``sweep_dir``; the analysis files it wrote."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    cmd = [sys.executable, "run.py", "-m", f"experiment={name}", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = pd.read_csv(sweep_dir / "summary" / "jobs.csv")
    assert (jobs["state"] == "done").all()
    files = {p.name: p for p in (sweep_dir / "analysis").iterdir()}
    assert files and all(p.stat().st_size > 0 for p in files.values())
    return files


def test_quick_fig3_end_to_end_and_redrawn(tmp_path):
    sweep = tmp_path / "fig3_quick"
    files = _run_quick("fig3_quick", sweep)
    assert set(files) == {"fig3.png", "fig3_layer_scores.csv", "fig3_top_scores.csv"}
    layers, top = pd.read_csv(files["fig3_layer_scores.csv"]), pd.read_csv(files["fig3_top_scores.csv"])
    sources = ["alexnet", "resnet18", "vit_tiny_patch16_224"]
    assert set(layers["target"]) == {"alexnet", "resnet18"} and set(layers["source"]) == set(sources)
    assert set(layers["dataset"]) == {"synthetic_objects"} and set(layers["n_images"]) == {16}
    assert (layers["metric"] == "cka").all() and layers["score"].between(0, 1 + 1e-9).all()
    assert layers.groupby("target")["matching_layer"].sum().gt(0).all()
    n_target_layers = layers.drop_duplicates(["target", "target_layer"]).shape[0]
    assert len(top) == n_target_layers * len(sources)
    assert top.groupby(["target", "target_layer"])["winner"].sum().eq(1).all()
    # the top scores agree with the sweep's own identifiability table
    ident = pd.read_csv(sweep / "summary" / "identifiability.csv").set_index(["target", "target_layer"])
    win = top[top["winner"]].set_index(["target", "target_layer"])
    assert (win["source"] == ident.loc[win.index, "best_source"]).all()
    assert (win["correct"] == ident.loc[win.index, "correct"]).all()
    # redrawn from the finished sweep with one command (the analysis named in its multirun.yaml)
    shutil.rmtree(sweep / "analysis")
    proc = subprocess.run([sys.executable, "-m", "idsim.sweep", "summarize", str(sweep)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in (sweep / "analysis").iterdir()} == set(files)
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "analysis" / "fig3_top_scores.csv"), top)


@pytest.mark.slow
def test_quick_fig2_regression(tmp_path):
    files = _run_quick("fig2_quick", tmp_path / "s")
    layers = pd.read_csv(files["fig2_layer_scores.csv"])
    assert (layers["metric"] == "regression").all() and layers["score"].between(-1, 1).all()
    assert set(layers["target"]) == {"alexnet", "resnet18"} and "fig2.png" in files


@pytest.mark.slow
def test_quick_fig4_unit_ratio(tmp_path):
    files = _run_quick("fig4_quick", tmp_path / "s")
    assert set(pd.read_csv(files["fig4_layer_scores.csv"])["unit_ratio"]) == {0.01}
    curve = pd.read_csv(files["fig4_identifiability_vs_unit_ratio.csv"])
    assert sorted(set(curve["unit_ratio"])) == [0.01, 0.1, 1.0] and set(curve["target"]) == {"alexnet", "resnet18"}
    assert curve["fraction_correct"].between(0, 1).all()
    assert {"fig4.png", "fig4_identifiability_vs_unit_ratio.png"} <= set(files)


@pytest.mark.slow
def test_quick_fig5_probe_sets(tmp_path):
    files = _run_quick("fig5_quick", tmp_path / "s")
    table = pd.read_csv(files["fig5_identifiability_by_probe_set.csv"])
    assert set(table["probe_set"]) == {"shapes", "natural", "synthetic_objects", "texture_noise_quick"}
    assert table["identifiability_index"].between(-1, 1).all()
    scores = pd.read_csv(tmp_path / "s" / "summary" / "scores.csv")
    assert set(scores["n_images"]) == {16} and "texture_noise" in set(scores["dataset"])


@pytest.mark.slow
def test_quick_fig6_conv_vs_attention(tmp_path):
    files = _run_quick("fig6_quick", tmp_path / "s")
    best, st = pd.read_csv(files["fig6_max_cka.csv"]), pd.read_csv(files["fig6_class_stats.csv"])
    assert set(best["model_class"]) == {sysid.CLASS_CNN, sysid.CLASS_TRANSFORMER}
    for _, r in st.iterrows():
        d = best[(best["target"] == r["target"]) & (best["target_layer"] == r["target_layer"])]
        ref = stats.ttest_ind(d.loc[d["model_class"] == "CNN", "score"], d.loc[d["model_class"] == "transformer",
                              "score"], equal_var=False)
        assert r["p_value"] == pytest.approx(ref.pvalue) and r["significant"] == (ref.pvalue < 0.01)
    for t in ("resnet18", "deit_tiny_patch16_224"):
        d = best[best["target"] == t]
        assert t not in set(d["source"]) and d["source"].nunique() == 6


@pytest.mark.slow
def test_quick_mouse(tmp_path):
    files = _run_quick("mouse_quick", tmp_path / "s")
    best = pd.read_csv(files["mouse_max_over_layers.csv"])
    assert set(best["metric"]) == set(mouse.METRICS)
    assert set(best["variant"]) == {"random seed 2", "random seed 3"}
    assert best["best_layer_relative_depth"].between(0, 1).all()
    summ = pd.read_csv(files["mouse_model_summary.csv"])
    assert ((summ["ci_low"] <= summ["score"] + 1e-12) & (summ["score"] <= summ["ci_high"] + 1e-12)).all()
    assert pd.read_csv(files["mouse_rsa_vs_regression.csv"])["spearman_r"].between(-1, 1).all()
    # the target's weights and the images are pinned to seed 0 in both variants
    scores = pd.read_csv(tmp_path / "s" / "summary" / "scores.csv")
    assert set(scores["source_seed"]) == {2, 3}
    for d in (tmp_path / "s").glob("metric=*"):
        cfg = OmegaConf.load(d / "config.yaml")
        assert cfg.target.seed == 0 and cfg.dataset.seed == 0


def check_mouse_recording_quick(sweep: Path, files: dict[str, Path]) -> None:
    """The per-region tables of ``mouse_recording_quick``: every model x region once, CIs over stimuli, ceilings
    and neuroids kept as the jobs' ceilings.csv say, and maxima that agree with the jobs' own scores."""
    assert {"mouse_max_over_layers.csv", "mouse_groups.csv", "mouse_rank_agreement.csv", "mouse_ceilings.csv",
            "mouse_model_summary.csv", "mouse_rsa_vs_regression.csv", "mouse_regions.png", "mouse_rankings.png",
            "mouse_depth.png"} <= set(files)
    cfg = OmegaConf.load(ROOT / "conf" / "experiment" / "mouse_recording_quick.yaml")
    regions = list(cfg.target.layers)
    best = pd.read_csv(files["mouse_max_over_layers.csv"])
    assert set(best["metric"]) == set(mouse.METRICS) and set(best["target_layer"]) == set(regions)
    assert set(best["variant"]) == {"random seed 2", "random seed 3", "baseline"}
    assert set(best.loc[best["variant"] == "baseline", "source"]) == set(BASELINES)
    keys = ["metric", "variant", "source", "target_layer"]
    assert len(best) == 2 * len(regions) * (3 + 3 + 4) and not best.duplicated(keys).any()
    # CIs over stimuli (the jobs' bootstrap), ceilings per region and metric, normalised scores
    assert best[["ci_low", "ci_high", "ceiling"]].notna().all().all() and (best["ci_low"] <= best["ci_high"]).all()
    assert ((best["ci_low"] <= best["score"]) & (best["score"] <= best["ci_high"])).mean() >= 0.9
    assert best["ceiling"].between(0, 1).all()
    assert np.allclose(best["normalized_score"], best["score"] / best["ceiling"])
    ceilings = pd.read_csv(files["mouse_ceilings.csv"]).drop_duplicates(["metric", "target_layer"])
    ref = best.merge(ceilings, on=["metric", "target_layer"], suffixes=("", "_job"))
    assert len(ref) == len(best) and np.allclose(ref["ceiling"], ref["ceiling_job"])
    assert (ref["n_neuroids"] == ref["n_kept"]).all() and ref["n_kept"].between(1, 100).all()
    assert (ceilings["n_kept"] < ceilings["n_neuroids"]).any()   # the reliability filter drops neuroids
    net = best["variant"] != "baseline"
    assert best.loc[net, "best_layer_relative_depth"].between(0, 1).all()
    assert best.loc[~net, "best_layer_relative_depth"].isna().all()
    # the max over layers is the jobs' own: networks from their seed's job, baselines from the first job
    scores = pd.read_csv(sweep / "summary" / "scores.csv")
    base = scores[scores["source"].isin(BASELINES) & (scores["metric"] == "rsa")]
    pair = base.sort_values("seed").groupby(["source", "target_layer"])["score"]
    assert np.allclose(pair.first(), pair.last())   # the same features in both (rff's seed pinned); RSA: same score
    raw = scores.assign(variant=mouse.variants(scores))
    top = raw[~raw["source"].isin(BASELINES) | (raw["seed"] == 1)].groupby(keys)["score"].max()
    assert np.allclose(best.set_index(keys)["score"], top.loc[best.set_index(keys).index])
    # baselines vs the two seeds (standing in for trained vs random), and RSA vs regression over 10 models
    groups = pd.read_csv(files["mouse_groups.csv"])
    assert set(groups["group"]) == {"baseline", "random"} and len(groups) == 2 * len(regions) * 3
    assert set(groups.loc[groups["group"] == "baseline", "n_models"]) == {4}
    assert set(groups.loc[groups["group"] == "random", "n_models"]) == {3}
    ranks = pd.read_csv(files["mouse_rank_agreement.csv"])
    every = ranks[ranks["models"] == "all models"]
    assert len(every) == len(regions) + 1 and set(every["n_models"]) == {10}
    assert every["spearman_r"].between(-1, 1).all()
    for d in sweep.glob("metric=*"):
        job = OmegaConf.load(d / "config.yaml")
        assert job.target.seed == job.target.recording.seed == job.dataset.seed == job.sources.rff.seed == 0


@pytest.mark.slow
def test_quick_mouse_recording(tmp_path):
    sweep = tmp_path / "s"
    check_mouse_recording_quick(sweep, _run_quick("mouse_recording_quick", sweep))
