"""The system-identification paper's analyses (Han, Poggio & Cheung): Figs. 2-6.

* fig2 / fig3: every source layer x target layer score (a) and the top score per source (b), for
  neural regression and CKA;
* fig4: the same with 1% of target units, and identifiability against the unit ratio;
* fig5: identifiability index by probe set for each target;
* fig6: convolution vs attention: max CKA per source per target layer, class means +- SD,
  Welch's t-test per target layer at p < 0.01.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from idsim.errors import IdsimError

from . import models as M
from .common import (QUICK, Sweep, new_figure, save_figure, source_palette, welch_test, write_table)

MATCH_COLOR = "#2e9e44"
CLASS_COLORS = {M.CLASS_CNN: "#1f77b4", M.CLASS_TRANSFORMER: "#d62728"}
P_THRESHOLD = 0.01


# --------------------------------------------------------------------------- tables


def layer_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Every layer pair's score with ``matching_layer``: same architecture and same layer (the ideal mapping)."""
    cols = ["target", "target_layer", "target_layer_index", "source", "source_layer", "source_layer_index", "metric",
            "score", "same_architecture"]
    missing = [c for c in cols if c not in scores.columns]
    if missing:
        raise IdsimError(f"scores table lacks column(s) {', '.join(missing)}; expected idsim's scores.csv")
    extra = [c for c in ("unit_ratio", "probe_set", "n_images") if c in scores.columns]
    df = scores[cols + extra].copy()
    df["same_architecture"] = df["same_architecture"].astype(str).str.lower().eq("true")
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


# --------------------------------------------------------------------------- figures


def plot_layer_scores(layers: pd.DataFrame, top: pd.DataFrame, path: Path, title: str) -> Path:
    """Rows: targets. Left (a): every layer pair's score by target layer, the matching layer in green.
    Right (b): the top score of each source per target layer, the winner starred."""
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
            row[1].bar(xb, ts["score"], width=width, color=colors[s], label=s,
                       hatch="//" if ts["same_architecture"].any() else None, edgecolor="black" if
                       ts["same_architecture"].any() else None, linewidth=0.5)
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
    fig.tight_layout()
    return save_figure(fig, path)


def plot_unit_ratio_curve(curve: pd.DataFrame, path: Path) -> Path:
    """Mean identifiability index (left) and fraction of target layers identified (right) against the unit ratio."""
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
    fig.tight_layout()
    return save_figure(fig, path)


def plot_by_probe_set(ident: pd.DataFrame, path: Path) -> Path:
    """Identifiability index per target layer, one line per probe set, one panel per target (Fig. 5)."""
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
        ax.set_ylabel("identifiability index (CKA)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_conv_vs_attention(best: pd.DataFrame, stats_: pd.DataFrame, path: Path) -> Path:
    """Fig. 6: each source's max CKA per target layer (light), class mean +- SD (dark); n.s. where p >= 0.01."""
    targets = list(dict.fromkeys(best["target"]))
    fig = new_figure(5 * len(targets), 3.8)
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, target in zip(axes, targets):
        d, st = best[best["target"] == target], stats_[stats_["target"] == target]
        for k, cls in enumerate((M.CLASS_CNN, M.CLASS_TRANSFORMER)):
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
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- statistics


def class_stats(best: pd.DataFrame, threshold: float = P_THRESHOLD) -> pd.DataFrame:
    """Per target layer: each class's n, mean and SD of the sources' max scores; Welch's t and p."""
    rows = []
    for (target, layer, idx), d in best.groupby(["target", "target_layer", "target_layer_index"], sort=False):
        a = d.loc[d["model_class"] == M.CLASS_CNN, "score"].to_numpy()
        b = d.loc[d["model_class"] == M.CLASS_TRANSFORMER, "score"].to_numpy()
        t, p = welch_test(a, b)
        target_class = d["target_class"].iloc[0]
        own, other = (a, b) if target_class == M.CLASS_CNN else (b, a)
        rows.append({"target": target, "target_layer": layer, "target_layer_index": idx, "target_class": target_class,
                     f"n_{M.CLASS_CNN}": len(a), f"mean_{M.CLASS_CNN}": a.mean() if len(a) else np.nan,
                     f"sd_{M.CLASS_CNN}": a.std(ddof=1) if len(a) > 1 else np.nan,
                     f"n_{M.CLASS_TRANSFORMER}": len(b), f"mean_{M.CLASS_TRANSFORMER}": b.mean() if len(b) else np.nan,
                     f"sd_{M.CLASS_TRANSFORMER}": b.std(ddof=1) if len(b) > 1 else np.nan,
                     "welch_t": t, "p_value": p, "significant": bool(p < threshold),
                     "own_class_higher": bool(own.mean() > other.mean()) if len(own) and len(other) else False})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the analyses


def _sources(names: Sequence[str]) -> str:
    return f"sources={M.hydra_list(list(names))}"


def plan_layer_scores(metric: str, quick: bool, dataset: list[str], weights: str, unit_ratios: Sequence[float] = (1.0,),
                      name: str = "scores") -> list[Sweep]:
    """Fig. 2/3/4: targets x unit ratios for one metric; the Mixer target with identical weights (as the paper)."""
    ratios = ",".join(str(r) for r in unit_ratios)
    common = [f"metric={metric}", f"unit_ratio={ratios}", *dataset, f"weights={weights}"]
    if quick:
        return [Sweep(name, [*QUICK, f"target={','.join(M.QUICK_TARGETS)}", _sources(M.QUICK_SOURCES), *common])]
    return [Sweep(name, [f"target={','.join(M.PAPER_FIVE[:4])}", _sources(M.PAPER_FIVE), *common]),
            Sweep(f"{name}_mixer", ["target=mixer_b16_224", _sources(M.PAPER_FIVE), "identical_weights=true", *common])]


def analyze_layer_scores(scores: pd.DataFrame, out: Path, stem: str, title: str) -> dict[str, Path]:
    layers = layer_scores(scores)
    top = top_scores(layers)
    return {"layer_scores": write_table(layers, out / f"{stem}_layer_scores.csv"),
            "top_scores": write_table(top, out / f"{stem}_top_scores.csv"),
            "figure": plot_layer_scores(layers, top, out / f"{stem}.png", title)}


def identifiability_curve(ident: pd.DataFrame) -> pd.DataFrame:
    """Mean identifiability index and fraction of target layers identified, per target and unit ratio."""
    df = ident.copy()
    df["correct"] = df["correct"].astype(str).str.lower().eq("true")
    g = df.groupby(["target", "unit_ratio"], sort=True)
    return g.agg(mean_identifiability_index=("identifiability_index", "mean"),
                 fraction_correct=("correct", "mean"), n_target_layers=("correct", "size")).reset_index()


def plan_fig5(quick: bool, datasets: list[tuple[str, list[str]]], weights: str) -> list[Sweep]:
    targets = M.QUICK_TARGETS if quick else M.PAPER_FIVE[:4]
    sources = M.QUICK_SOURCES if quick else M.PAPER_FIVE
    return [Sweep(f"probe_{label}", [*(QUICK if quick else []), f"target={','.join(targets)}", _sources(sources),
                                     "metric=cka", f"weights={weights}", *ovr], meta={"probe_set": label})
            for label, ovr in datasets]


def by_probe_set(ident: pd.DataFrame) -> pd.DataFrame:
    keep = ["probe_set", "target", "target_layer", "target_layer_index", "identifiability_index", "correct",
            "best_source", "same_architecture_score", "mean_other_score"]
    return ident[[c for c in keep if c in ident.columns]].reset_index(drop=True)


def plan_fig6(quick: bool, dataset: list[str], weights: str) -> list[Sweep]:
    cnns, vits = (M.QUICK_CNNS, M.QUICK_TRANSFORMERS) if quick else (M.FIG6_CNNS, M.FIG6_TRANSFORMERS)
    targets = M.QUICK_FIG6_TARGETS if quick else M.FIG6_TARGETS
    return [Sweep(f"target_{t}", [*(QUICK if quick else []), f"target={t}",
                                  _sources([s for s in cnns + vits if s != t]),
                                  "metric=cka", f"weights={weights}", *dataset],
                  meta={"target_class": M.CLASS_TRANSFORMER if t in vits else M.CLASS_CNN})
            for t in targets]


def conv_vs_attention(scores: pd.DataFrame, quick: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    cnns, vits = (M.QUICK_CNNS, M.QUICK_TRANSFORMERS) if quick else (M.FIG6_CNNS, M.FIG6_TRANSFORMERS)
    keys = ["target", "target_layer", "target_layer_index", "source"]
    idx = scores.groupby(keys, sort=False)["score"].idxmax()
    best = scores.loc[idx.to_numpy(), [*keys, "source_layer", "score", "target_class"]].reset_index(drop=True)
    best = best.rename(columns={"source_layer": "best_source_layer"})
    best["model_class"] = [M.model_class(s, cnns, vits) for s in best["source"]]
    return best, class_stats(best)
