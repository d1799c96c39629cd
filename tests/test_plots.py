"""Tests for idsim.plots: every figure is written, is a valid PNG of sensible size, and
awkward input (NaN scores, odd names, several metrics, bad columns) is handled."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from idsim.errors import IdsimError
from idsim.plots import (
    plot_best_scores,
    plot_identifiability,
    plot_layer_heatmap,
    plot_layer_heatmaps,
    sanitize_filename,
    source_colors,
)

TARGET = "resnet18"
SOURCES = {
    "alexnet": [f"features.{i}" for i in (1, 4, 7, 9)],
    "resnet18": [f"layer{i}" for i in range(6)],
    "timm/vit tiny:224": [f"blocks.{i}" for i in range(7)],
}
TARGET_LAYERS = [f"layer{i}" for i in range(6)]


def make_scores(metric: str = "cka", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for src, layers in SOURCES.items():
        for i, s in enumerate(layers):
            for j, t in enumerate(TARGET_LAYERS):
                rows.append(
                    dict(source=src, source_layer=s, source_layer_index=i, target=TARGET,
                         target_layer=t, target_layer_index=j, metric=metric,
                         score=float(rng.uniform(0, 1)), same_architecture=src == TARGET)
                )
    # shuffled, so plotting has to restore depth order itself
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def make_best(scores: pd.DataFrame) -> pd.DataFrame:
    idx = scores.groupby(["target", "target_layer", "source"])["score"].idxmax()
    best = scores.loc[idx.dropna().astype(int)].rename(columns={"source_layer": "best_source_layer"})
    return best[["target", "target_layer", "target_layer_index", "source", "best_source_layer",
                 "score", "same_architecture", "metric"]].reset_index(drop=True)


def make_ident() -> pd.DataFrame:
    values = [0.2, -0.1, 0.05, np.nan, 0.3, -0.02]
    return pd.DataFrame(
        dict(target_layer=TARGET_LAYERS[::-1], target_layer_index=list(range(6))[::-1],
             identifiability_index=values[::-1], correct=[v > 0 for v in values][::-1])
    )


def assert_png(path, min_side: int = 300, max_side: int = 6000) -> tuple[int, int]:
    assert path.exists(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_side <= w <= max_side and min_side <= h <= max_side, im.size
        # not a blank canvas
        extrema = im.convert("L").getextrema()
        assert extrema[0] < extrema[1]
    return w, h


# --------------------------------------------------------------------------- heatmaps


def test_heatmap_writes_png_and_creates_parents(tmp_path):
    out = tmp_path / "a" / "b" / "heat.png"
    result = plot_layer_heatmap(make_scores(), "alexnet", out)
    assert result == out
    assert_png(out)


def test_heatmap_taller_for_deeper_source(tmp_path):
    scores = make_scores()
    _, h_small = assert_png(plot_layer_heatmap(scores, "alexnet", tmp_path / "a.png"))
    _, h_big = assert_png(plot_layer_heatmap(scores, "timm/vit tiny:224", tmp_path / "v.png"))
    assert h_big >= h_small


def test_heatmap_handles_nan_and_out_of_range(tmp_path):
    scores = make_scores()
    scores.loc[scores.index[::3], "score"] = np.nan
    rows = (scores["source"] == "alexnet") & (scores["target_layer"] == "layer2")
    scores.loc[rows, "score"] = np.nan  # a whole column without a best layer
    assert_png(plot_layer_heatmap(scores, "alexnet", tmp_path / "nan.png"))
    scores["score"] = scores["score"] * 4 - 2  # regression-like, outside [0, 1]
    assert_png(plot_layer_heatmap(scores, "resnet18", tmp_path / "neg.png"))
    scores["score"] = np.nan
    assert_png(plot_layer_heatmap(scores, "resnet18", tmp_path / "allnan.png"))


def test_heatmap_unknown_source_and_missing_columns(tmp_path):
    with pytest.raises(IdsimError, match="vgg11"):
        plot_layer_heatmap(make_scores(), "vgg11", tmp_path / "x.png")
    with pytest.raises(IdsimError, match="score"):
        plot_layer_heatmap(make_scores().drop(columns="score"), "alexnet", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_heatmaps_one_file_per_source_with_sanitised_names(tmp_path):
    out = tmp_path / "heat"
    paths = plot_layer_heatmaps(make_scores(), out)
    names = sorted(p.name for p in paths)
    assert names == ["heatmap_alexnet.png", "heatmap_resnet18.png",
                     "heatmap_timm_vit_tiny_224.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    for p in paths:
        assert p.parent == out
        assert_png(p)


def test_heatmaps_several_metrics_get_one_file_each(tmp_path):
    scores = pd.concat([make_scores("cka"), make_scores("regression", seed=1)])
    paths = plot_layer_heatmaps(scores, tmp_path)
    assert len(paths) == 6
    assert {p.name for p in paths} >= {"heatmap_alexnet_cka.png",
                                        "heatmap_alexnet_regression.png"}


def test_single_heatmap_several_metrics_warns_and_picks(tmp_path):
    scores = pd.concat([make_scores("cka"), make_scores("regression", seed=1)])
    with pytest.warns(UserWarning, match="metric"):
        plot_layer_heatmap(scores, "alexnet", tmp_path / "first.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_layer_heatmap(scores, "alexnet", tmp_path / "reg.png", metric="regression")
    with pytest.raises(IdsimError, match="cka"):
        plot_layer_heatmap(scores, "alexnet", tmp_path / "bad.png", metric="nope")


def test_heatmaps_colliding_names_are_not_overwritten(tmp_path):
    scores = make_scores()
    clash = scores[scores["source"] == "alexnet"].assign(source="alex/net")
    clash2 = scores[scores["source"] == "alexnet"].assign(source="alex net")
    paths = plot_layer_heatmaps(pd.concat([clash, clash2]), tmp_path)
    assert len({p.name for p in paths}) == 2
    assert all(p.exists() for p in paths)


@pytest.mark.parametrize(
    "name, expected",
    [("alexnet", "alexnet"), ("timm/vit_base", "timm_vit_base"), ("a b:c*?", "a_b_c"),
     ("../etc/passwd", "etc_passwd"), ("..", "unnamed"), ("", "unnamed"),
     ("vit.base-1", "vit.base-1")],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


# --------------------------------------------------------------------------- best scores


def test_best_scores_png(tmp_path):
    out = tmp_path / "sub" / "best.png"
    assert plot_best_scores(make_best(make_scores()), out) == out
    assert_png(out)


def test_best_scores_nan_and_negative(tmp_path):
    best = make_best(make_scores())
    best.loc[best.index[::4], "score"] = np.nan
    best.loc[best.index[1::5], "score"] = -0.4
    assert_png(plot_best_scores(best, tmp_path / "b.png"))
    best["score"] = np.nan
    assert_png(plot_best_scores(best, tmp_path / "allnan.png"))


def test_best_scores_widens_with_layers(tmp_path):
    rng = np.random.default_rng(3)
    for n_layers in (5, 20):
        rows = [
            dict(target=TARGET, target_layer=f"layer{j}", target_layer_index=j, source=f"src{k}",
                 best_source_layer="x", score=rng.uniform(), same_architecture=k == 0,
                 metric="cka")
            for j in range(n_layers) for k in range(12)
        ]
        plot_best_scores(pd.DataFrame(rows), tmp_path / f"b{n_layers}.png")
    w5, _ = assert_png(tmp_path / "b5.png")
    w20, _ = assert_png(tmp_path / "b20.png")
    assert w20 > w5 * 1.5


def test_best_scores_missing_column(tmp_path):
    with pytest.raises(IdsimError, match="best_source_layer"):
        plot_best_scores(make_best(make_scores()).drop(columns="best_source_layer"),
                         tmp_path / "b.png")


def test_source_colors_stable_and_distinct():
    a = source_colors(["vgg11", "alexnet", "resnet18"])
    b = source_colors(["resnet18", "vgg11", "alexnet"])
    assert a == b
    assert len(set(source_colors([f"s{i}" for i in range(12)]).values())) == 12


# --------------------------------------------------------------------------- identifiability


def test_identifiability_png(tmp_path):
    out = tmp_path / "x" / "ident.png"
    assert plot_identifiability(make_ident(), out) == out
    assert_png(out)


def test_identifiability_all_nan_and_object_correct(tmp_path):
    ident = make_ident()
    ident["identifiability_index"] = np.nan
    ident["correct"] = None
    assert_png(plot_identifiability(ident, tmp_path / "nan.png"))


def test_identifiability_missing_column(tmp_path):
    with pytest.raises(IdsimError, match="correct"):
        plot_identifiability(make_ident().drop(columns="correct"), tmp_path / "i.png")


# --------------------------------------------------------------------------- global state


def test_no_pyplot_figures_left_and_thread_safe(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    scores = make_scores()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            plot_layer_heatmap(scores, "alexnet", tmp_path / f"t{i}.png")
            plot_best_scores(make_best(scores), tmp_path / f"b{i}.png")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        assert_png(tmp_path / f"t{i}.png")
    assert matplotlib.get_backend() == backend
    import sys

    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
