"""The system-identification paper's analyses (Han, Poggio & Cheung): Figs. 2-6.

Each public function is an analysis ``(summary, out_dir) -> {name: path}`` named by
``conf/experiment/fig<N>[_quick].yaml``:

* :func:`fig2` / :func:`fig3`: every source layer x target layer score (a) and the top score per
  source (b), for neural regression and CKA;
* :func:`fig4`: the same with 1% of target units, and identifiability against the unit ratio;
* :func:`fig5`: identifiability index by probe set (the swept ``dataset``) for each target;
* :func:`fig6`: convolution vs attention: max CKA per source per target layer, class means +- SD,
  Welch's t-test per target layer at p < 0.01 (the target's own architecture left out).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from idsim.errors import IdsimError

from .common import as_bool, finished, log, new_figure, source_palette, welch_test, write_table

MATCH_COLOR = "#2e9e44"
P_THRESHOLD = 0.01
FIG4_UNIT_RATIO = 0.01   # Fig. 4's panels: 1% of the target units

CLASS_CNN, CLASS_TRANSFORMER = "CNN", "transformer"
CLASS_COLORS = {CLASS_CNN: "#1f77b4", CLASS_TRANSFORMER: "#d62728"}
# Fig. 6's classes of the sources in conf/experiment/fig6*.yaml (the paper's appendix A.2, and the quick
# variant's small models). Any other source is of class "other" and left out of the test.
MODEL_CLASSES = {
    **dict.fromkeys(["alexnet", "vgg11", "vgg13", "vgg16", "vgg13_bn", "resnet18", "resnet34", "resnet50",
                     "wide_resnet50_2", "squeezenet1_0", "densenet121", "mobilenet_v2", "mobilenet_v3_small"],
                    CLASS_CNN),
    **dict.fromkeys(["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "deit_tiny_patch16_224", "vit_tiny_patch16_224",
                     "deit_small_patch16_224", "tnt_s_patch16_224"], CLASS_TRANSFORMER),
}


def model_class(name: str) -> str:
    """``CNN``, ``transformer`` or ``other`` for a model of Fig. 6."""
    return MODEL_CLASSES.get(str(name), "other")


# --------------------------------------------------------------------------- tables


def layer_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Every layer pair's score with ``matching_layer``: same architecture and same layer (the ideal mapping)."""
    cols = ["target", "target_layer", "target_layer_index", "source", "source_layer", "source_layer_index", "metric",
            "score", "same_architecture"]
    missing = [c for c in cols if c not in scores.columns]
    if missing:
        raise IdsimError(f"scores table lacks column(s) {', '.join(missing)}; expected idsim's scores.csv")
    extra = [c for c in ("unit_ratio", "dataset", "n_images") if c in scores.columns]
    df = scores[cols + extra].copy()
    df["same_architecture"] = as_bool(df["same_architecture"])
    df["matching_layer"] = df["same_architecture"] & (df["source_layer"] == df["target_layer"])
    return df.reset_index(drop=True)


def top_scores(layers: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Aggregate top score per source for each target layer (Fig. 2b/3b): best layer, winner, correct."""
    keys = [*by, "target", "target_layer", "target_layer_index"]
    idx = layers.groupby([*keys, "source"], sort=False)["score"].idxmax()
    top = layers.loc[idx.to_numpy(), [*keys, "source", "source_layer", "score", "same_architecture"]]
    top = top.rename(columns={"source_layer": "best_source_layer"}).reset_index(drop=True)
    best = top.groupby(keys, sort=False)["score"].transform("max")
    top["winner"] = top["score"] == best
    won_by_same = top[top["winner"]].groupby(keys, sort=False)["same_architecture"].any()
    top = top.merge(won_by_same.rename("correct").reset_index(), on=keys, how="left")
    return top.sort_values([*keys, "score"], ascending=[True] * len(keys) + [False], kind="stable")


def identifiability_curve(ident: pd.DataFrame) -> pd.DataFrame:
    """Mean identifiability index and fraction of target layers identified, per target and unit ratio."""
    df = ident.copy()
    df["correct"] = as_bool(df["correct"])
    g = df.groupby(["target", "unit_ratio"], sort=True)
    return g.agg(mean_identifiability_index=("identifiability_index", "mean"),
                 fraction_correct=("correct", "mean"), n_target_layers=("correct", "size")).reset_index()


def by_probe_set(ident: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5's table: the identifiability rows with ``probe_set``, the swept ``dataset`` choice of their job."""
    if "dataset" in ident.columns:
        probe = ident["dataset"].astype(str)
    else:  # one probe set only (not swept): its name from the scores
        probe = ident["job"].map(scores.groupby("job")["dataset"].first()).astype(str)
    keep = ["target", "target_layer", "target_layer_index", "identifiability_index", "correct", "best_source",
            "same_architecture_score", "mean_other_score"]
    out = ident[[c for c in keep if c in ident.columns]].copy()
    out.insert(0, "probe_set", probe.to_numpy())
    return out.reset_index(drop=True)


def class_stats(best: pd.DataFrame, threshold: float = P_THRESHOLD) -> pd.DataFrame:
    """Per target layer: each class's n, mean and SD of the sources' max scores; Welch's t and p."""
    rows = []
    for (target, layer, idx), d in best.groupby(["target", "target_layer", "target_layer_index"], sort=False):
        a = d.loc[d["model_class"] == CLASS_CNN, "score"].to_numpy()
        b = d.loc[d["model_class"] == CLASS_TRANSFORMER, "score"].to_numpy()
        t, p = welch_test(a, b)
        target_class = d["target_class"].iloc[0]
        own, other = (a, b) if target_class == CLASS_CNN else (b, a)
        rows.append({"target": target, "target_layer": layer, "target_layer_index": idx, "target_class": target_class,
                     f"n_{CLASS_CNN}": len(a), f"mean_{CLASS_CNN}": a.mean() if len(a) else np.nan,
                     f"sd_{CLASS_CNN}": a.std(ddof=1) if len(a) > 1 else np.nan,
                     f"n_{CLASS_TRANSFORMER}": len(b), f"mean_{CLASS_TRANSFORMER}": b.mean() if len(b) else np.nan,
                     f"sd_{CLASS_TRANSFORMER}": b.std(ddof=1) if len(b) > 1 else np.nan,
                     "welch_t": t, "p_value": p, "significant": bool(p < threshold),
                     "own_class_higher": bool(own.mean() > other.mean()) if len(own) and len(other) else False})
    return pd.DataFrame(rows)


def conv_vs_attention(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 6's tables: each source's max score per target layer (the target's own architecture left out),
    with its class and the target's; and :func:`class_stats`."""
    df = scores[~as_bool(scores["same_architecture"])]
    keys = ["target", "target_layer", "target_layer_index", "source"]
    idx = df.groupby(keys, sort=False)["score"].idxmax()
    best = df.loc[idx.to_numpy(), [*keys, "source_layer", "score"]].reset_index(drop=True)
    best = best.rename(columns={"source_layer": "best_source_layer"})
    best["model_class"] = [model_class(s) for s in best["source"]]
    best["target_class"] = [model_class(t) for t in best["target"]]
    other = sorted(set(best.loc[best["model_class"] == "other", "source"]))
    if other:
        log.warning("fig6: %s are neither CNNs nor transformers in experiments.sysid.MODEL_CLASSES; left out of"
                    " the test", ", ".join(other))
    return best, class_stats(best)


# --------------------------------------------------------------------------- figures


def plot_layer_scores(layers: pd.DataFrame, top: pd.DataFrame, path: Path, title: str) -> Path:
    """Rows: targets. Left (a): every layer pair's score by target layer, the matching layer in green.
    Right (b): the top score of each source per target layer, the winner starred."""
    from idsim.plots import save_figure

    targets = list(dict.fromkeys(layers["target"]))
    colors = source_palette(layers["source"])
    sources = sorted(colors)
    fig = new_figure(13, 3.2 * len(targets))
    axes = fig.subplots(len(targets), 2, squeeze=False)
    for row, target in zip(axes, targets):
        lt, tt = layers[layers["target"] == target], top[top["target"] == target]
        n_layers = int(lt["target_layer_index"].max()) + 1
        width = 0.8 / len(sources)
        for k, s in enumerate(sources):
            ls = lt[(lt["source"] == s) & ~lt["matching_layer"]]
            x = ls["target_layer_index"] + (k - (len(sources) - 1) / 2) * width
            row[0].scatter(x, ls["score"], s=10, color=colors[s], alpha=0.6, label=s)
            ts = tt[tt["source"] == s].sort_values("target_layer_index")
            xb = ts["target_layer_index"] + (k - (len(sources) - 1) / 2) * width
            same = ts["same_architecture"].any()
            row[1].bar(xb, ts["score"], width=width, color=colors[s], label=s, hatch="//" if same else None,
                       edgecolor="black" if same else None, linewidth=0.5)
            win = ts[ts["winner"]]
            row[1].scatter(win["target_layer_index"] + (k - (len(sources) - 1) / 2) * width,
                           win["score"] + 0.02, marker="*", color="black", s=30)
        m = lt[lt["matching_layer"]]
        row[0].scatter(m["target_layer_index"], m["score"], s=40, color=MATCH_COLOR, edgecolor="black",
                       label="same architecture, same layer", zorder=3)
        names = lt.drop_duplicates("target_layer_index").sort_values("target_layer_index")["target_layer"]
        for ax, panel in zip(row, ("a: every source layer", "b: top score per source")):
            ax.set_xticks(range(n_layers), names, rotation=60, ha="right", fontsize=6)
            ax.set_title(f"{target} ({panel})", fontsize=9)
            ax.set_ylabel(str(lt["metric"].iloc[0]))
        row[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0][0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_unit_ratio_curve(curve: pd.DataFrame, path: Path) -> Path:
    """Mean identifiability index (left) and fraction of target layers identified (right) against the unit ratio."""
    from idsim.plots import save_figure

    fig = new_figure(10, 3.5)
    ax1, ax2 = fig.subplots(1, 2)
    for target, d in curve.groupby("target", sort=False):
        d = d.sort_values("unit_ratio")
        ax1.plot(d["unit_ratio"], d["mean_identifiability_index"], marker="o", label=target)
        ax2.plot(d["unit_ratio"], d["fraction_correct"], marker="o", label=target)
    for ax, label in ((ax1, "mean identifiability index"), (ax2, "fraction of target layers identified")):
        ax.set_xscale("log")
        ax.set_xlabel("fraction of target units recorded (unit_ratio)")
        ax.set_ylabel(label)
    ax2.set_ylim(-0.05, 1.05)
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.legend(fontsize=7)
    return save_figure(fig, path)


def plot_by_probe_set(ident: pd.DataFrame, path: Path) -> Path:
    """Identifiability index per target layer, one line per probe set, one panel per target (Fig. 5)."""
    from idsim.plots import save_figure

    targets = list(dict.fromkeys(ident["target"]))
    fig = new_figure(4.5 * len(targets), 3.6)
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, target in zip(axes, targets):
        d = ident[ident["target"] == target]
        for probe, dp in d.groupby("probe_set", sort=False):
            dp = dp.sort_values("target_layer_index")
            ax.plot(dp["target_layer_index"], dp["identifiability_index"], marker="o", label=probe)
        names = d.drop_duplicates("target_layer_index").sort_values("target_layer_index")
        ax.set_xticks(names["target_layer_index"], names["target_layer"], rotation=60, ha="right", fontsize=6)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"target {target}", fontsize=9)
        ax.set_ylabel("identifiability index")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_conv_vs_attention(best: pd.DataFrame, stats_: pd.DataFrame, path: Path) -> Path:
    """Fig. 6: each source's max CKA per target layer (light), class mean +- SD (dark); n.s. where p >= 0.01."""
    from idsim.plots import save_figure

    targets = list(dict.fromkeys(best["target"]))
    fig = new_figure(5 * len(targets), 3.8)
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, target in zip(axes, targets):
        d, st = best[best["target"] == target], stats_[stats_["target"] == target]
        for k, cls in enumerate((CLASS_CNN, CLASS_TRANSFORMER)):
            off = -0.15 if k == 0 else 0.15
            dc = d[d["model_class"] == cls]
            ax.scatter(dc["target_layer_index"] + off, dc["score"], s=8, alpha=0.35, color=CLASS_COLORS[cls])
            ax.errorbar(st["target_layer_index"] + off, st[f"mean_{cls}"], yerr=st[f"sd_{cls}"], fmt="o",
                        color=CLASS_COLORS[cls], ms=5, capsize=2, label=f"{cls} (mean ± SD)")
        for _, r in st[~st["significant"]].iterrows():  # n.s.: p >= threshold; n/a: a class has < 2 sources
            ax.text(r["target_layer_index"], 0.98, "n.s." if np.isfinite(r["p_value"]) else "n/a", ha="center",
                    va="top", fontsize=6, transform=ax.get_xaxis_transform())
        ax.set_xticks(st["target_layer_index"], st["target_layer"], rotation=60, ha="right", fontsize=6)
        ax.set_title(f"target {target} ({st['significant'].sum()}/{len(st)} layers p < {P_THRESHOLD})", fontsize=9)
        ax.set_ylabel("max CKA over source layers")
        ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the analyses


def _layer_score_files(scores: pd.DataFrame, out: Path, stem: str, title: str) -> dict[str, Path]:
    layers = layer_scores(scores)
    top = top_scores(layers)
    winners = top.drop_duplicates(["target", "target_layer"])
    for t, d in winners.groupby("target", sort=False):
        log.info("%s: %s identified at %d/%d target layers", stem, t, int(d["correct"].sum()), len(d))
    return {"layer_scores": write_table(layers, out / f"{stem}_layer_scores.csv"),
            "top_scores": write_table(top, out / f"{stem}_top_scores.csv"),
            "figure": plot_layer_scores(layers, top, out / f"{stem}.png", title)}


def fig2(summary, out_dir: Path) -> dict[str, Path]:
    """Fig. 2 (neural regression): ``fig2.png``, ``fig2_layer_scores.csv``, ``fig2_top_scores.csv``."""
    scores, _ = finished(summary)
    return _layer_score_files(scores, Path(out_dir), "fig2", "fig2: neural regression")


def fig3(summary, out_dir: Path) -> dict[str, Path]:
    """Fig. 3 (CKA): ``fig3.png``, ``fig3_layer_scores.csv``, ``fig3_top_scores.csv``."""
    scores, _ = finished(summary)
    return _layer_score_files(scores, Path(out_dir), "fig3", "fig3: CKA")


def fig4(summary, out_dir: Path) -> dict[str, Path]:
    """Fig. 4: Fig. 3's panels at 1% of target units (``fig4*``), and identifiability against the unit ratio
    (``fig4_identifiability_vs_unit_ratio.{png,csv}``)."""
    out = Path(out_dir)
    scores, ident = finished(summary)
    if "unit_ratio" not in ident.columns:
        raise IdsimError("fig4 needs a sweep over unit_ratio (e.g. hydra.sweeper.params.unit_ratio=0.01,0.1,1.0)")
    ratios = pd.to_numeric(scores["unit_ratio"])
    if not np.isclose(ratios, FIG4_UNIT_RATIO).any():
        raise IdsimError(f"fig4 draws its panels at unit_ratio={FIG4_UNIT_RATIO}, which the sweep lacks"
                         f" (it has {sorted(set(ratios))})")
    files = _layer_score_files(scores[np.isclose(ratios, FIG4_UNIT_RATIO)], out, "fig4",
                               "fig4: CKA with 1% of target units")
    curve = identifiability_curve(ident)
    log.info("fig4: identifiability against the unit ratio\n%s", curve.round(3).to_string(index=False))
    files["curve_table"] = write_table(curve, out / "fig4_identifiability_vs_unit_ratio.csv")
    files["curve"] = plot_unit_ratio_curve(curve, out / "fig4_identifiability_vs_unit_ratio.png")
    return files


def fig5(summary, out_dir: Path) -> dict[str, Path]:
    """Fig. 5: identifiability index per target layer by probe set: ``fig5.png``,
    ``fig5_identifiability_by_probe_set.csv``."""
    out = Path(out_dir)
    scores, ident = finished(summary)
    table = by_probe_set(ident, scores)
    mean = table.groupby(["target", "probe_set"], sort=False)["identifiability_index"].mean().unstack()
    log.info("fig5: mean identifiability index\n%s", mean.round(3).to_string())
    return {"table": write_table(table, out / "fig5_identifiability_by_probe_set.csv"),
            "figure": plot_by_probe_set(table, out / "fig5.png")}


def fig6(summary, out_dir: Path) -> dict[str, Path]:
    """Fig. 6: CNN vs transformer sources' max CKA per target layer, Welch's t-test: ``fig6.png``,
    ``fig6_max_cka.csv``, ``fig6_class_stats.csv``."""
    out = Path(out_dir)
    scores, _ = finished(summary)
    best, st = conv_vs_attention(scores)
    for t, d in st.groupby("target", sort=False):
        ns = d.loc[~d["significant"], "target_layer"].tolist()
        log.info("fig6: %s: %d/%d target layers differ at p < %s; own class higher at %d; not significant: %s", t,
                 int(d["significant"].sum()), len(d), P_THRESHOLD, int(d["own_class_higher"].sum()), ns or "none")
    return {"max_cka": write_table(best, out / "fig6_max_cka.csv"),
            "stats": write_table(st, out / "fig6_class_stats.csv"),
            "figure": plot_conv_vs_attention(best, st, out / "fig6.png")}
