"""The mouse paper's per-region zoo statistics over tidy score tables."""
import numpy as np
import pandas as pd
import pytest

from idsim import load_metric, zoo
from idsim.errors import IdsimError
from idsim.featureset import FeatureSet, LayerData
from idsim.gram import pattern_gram


def table():
    """3 sources (a trained, a random, a baseline) x 3 layers (1 for the baseline) x 2 regions x 2 metrics."""
    rows = []
    peak = {"trained": 2, "random": 0}
    for metric, scale in (("rsa", 1.0), ("regression_loo", 0.5)):
        for source, weights, n_layers, level in (("alexnet", "imagenet", 3, 0.6), ("vgg11", "random", 3, 0.4),
                                                 ("gabor", "baseline", 1, 0.1)):
            for t, region in enumerate(("VISp", "VISl")):
                for i in range(n_layers):
                    best = peak.get("trained" if weights == "imagenet" else "random", 0)
                    score = scale * (level - 0.1 * abs(i - best) + 0.05 * t)
                    rows.append({"metric": metric, "source": source, "source_layer": f"l{i}", "source_layer_index": i,
                                 "target": "recording", "target_layer": region, "target_layer_index": t,
                                 "score": score, "ceiling": 0.8, "normalized_score": score / 0.8,
                                 "source_weights": weights})
    return pd.DataFrame(rows)


def test_max_over_layers_depth_and_groups():
    best = zoo.max_over_layers(table())
    assert len(best) == 2 * 3 * 2
    a = best[(best.metric == "rsa") & (best.source == "alexnet") & (best.target_layer == "VISp")].iloc[0]
    assert a.best_layer == "l2" and a.best_layer_relative_depth == 1.0 and a.group == "trained"
    assert np.isclose(a.score, 0.6) and np.isclose(a.normalized_score, 0.75)
    v = best[(best.source == "vgg11")].iloc[0]
    assert v.best_layer_relative_depth == 0.0 and v.group == "random"
    g = best[best.source == "gabor"].iloc[0]
    assert g.group == "baseline" and g.best_layer_relative_depth == 0.0


def test_region_summary_takes_the_max_within_each_resample():
    scores = table()
    reps = []
    for b in range(50):
        d = scores.copy()
        d["resample"] = b
        d["score"] = d["score"] + 0.01 * (b - 25) / 25
        reps.append(d)
    summ = zoo.region_summary(scores, pd.concat(reps))
    a = summ[(summ.metric == "rsa") & (summ.source == "alexnet") & (summ.target_layer == "VISp")].iloc[0]
    assert a.ci_low < a.score < a.ci_high and a.ci_high - a.ci_low < 0.03
    assert zoo.region_summary(scores).ci_low.isna().all()


def test_rank_agreement_and_group_summary():
    best = zoo.max_over_layers(table())
    agree = zoo.rank_agreement(best)
    assert list(agree.target_layer) == ["VISp", "VISl", "mean over regions"]
    assert np.allclose(agree.spearman_r, 1.0) and (agree.n_models == 3).all()
    groups = zoo.group_summary(best)
    assert list(groups.group.unique()) == ["baseline", "trained", "random"]
    first = groups[(groups.metric == "rsa") & (groups.target_layer == "VISp")].set_index("group")
    assert first.loc["trained", "score"] > first.loc["random", "score"] > first.loc["baseline", "score"]
    with pytest.raises(IdsimError, match="needs an RSA and a regression metric"):
        zoo.rank_agreement(best[best.metric == "rsa"])


def test_mouse_summary_writes_tables(tmp_path):
    files = zoo.mouse_summary(table(), tmp_path)
    assert set(files) == {"max_over_layers", "groups", "rank_agreement"}
    assert all(p.is_file() for p in files.values())


def features(X_by_layer, plan_kind, name):
    fs = FeatureSet(model=name, n_images=next(iter(X_by_layer.values())).shape[0])
    for layer, X in X_by_layer.items():
        d = LayerData(name=layer, n_units=X.shape[1], n_sampled=X.shape[1])
        if plan_kind == "units":
            d.units, d.unit_index = X.astype(np.float32), np.arange(X.shape[1])
        elif plan_kind == "features":
            d.features = X.astype(np.float32)
        else:
            d.grams = {k: pattern_gram(X, k) for k in ("column", "row")}
        fs.layers[layer] = d
    return fs


def test_region_summary_takes_its_intervals_from_a_runs_bootstrap_table():
    """bootstrap.csv (stats.bootstrap) holds each source's best score per region and resample."""
    from idsim.stats import best_per_resample, resamples

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 8))
    Y = X @ rng.standard_normal((8, 5)) + 0.5 * rng.standard_normal((30, 5))
    metric = load_metric("cka")
    s, t = features({"a": X, "b": X[:, :3]}, "grams", "src"), features({"V1": Y}, "grams", "rec")
    res = metric.score(s, t, resamples=resamples(30, 50, seed=0))
    reps = best_per_resample(res.boot, ["V1"]).assign(metric="cka", source="src", target="rec")
    assert len(reps) == 50 and reps.score.max() <= 1 + 1e-12
    scores = pd.DataFrame({"metric": "cka", "source": "src", "target": "rec", "target_layer": "V1",
                           "source_layer": ["a", "b"], "source_layer_index": [0, 1], "score": res.score[:, 0]})
    best = zoo.region_summary(scores, reps)
    assert best.loc[0, "ci_low"] <= best.loc[0, "ci_high"]
    assert best.loc[0, "ci_low"] == pytest.approx(np.quantile(reps.score, 0.025))
