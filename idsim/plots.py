"""Figures for layer-to-layer scores and identifiability.

Four entry points, each writing one PNG (or a folder of them) and returning the path(s):

* :func:`plot_layer_heatmap` -- score of every (source layer, target layer) pair for one
  source model, with the best source layer of each target layer marked.
* :func:`plot_layer_heatmaps` -- the same, one file ``heatmap_<source>.png`` per source.
* :func:`plot_best_scores` -- grouped bars: for each target layer, the best score that each
  source reaches; the source with the target's architecture is hatched and edged in black,
  and a star sits above the winning bar of every target layer.
* :func:`plot_identifiability` -- the identifiability index per target layer, green bars
  where the target's own architecture wins and red where it does not.

Choices:

* Figures are built with :class:`matplotlib.figure.Figure` and drawn by ``FigureCanvasAgg``
  directly: no pyplot, no global backend switch, no global rcParams changes, so the
  functions are safe to call from several threads and leave no open figures behind.
* Several metrics or several targets in one DataFrame: every function has ``metric=`` and
  ``target=`` keywords. Left at ``None`` with only one value present, that value is used.
  Left at ``None`` with several present, the single-figure functions take the first value
  in order of appearance and emit a :class:`UserWarning`; :func:`plot_layer_heatmaps`
  instead writes one file per combination and adds ``_to_<target>`` and/or ``_<metric>``
  to the file names only for the dimensions that have several values.
* Repeated rows for the same cell are averaged in the heatmap; in the bar chart the
  maximum is kept (it is a "best score" plot).
* Colours: scores use ``viridis`` on a fixed [0, 1] range when every finite score lies in
  [0, 1], otherwise the data range; NaN cells are light grey. Sources get colours from a
  fixed palette assigned in alphabetical order of their names, so the same set of sources
  gets the same colours in every figure.
* Bad input (missing columns, unknown source, nothing to plot) raises
  :class:`idsim.errors.IdsimError` with a one-line message.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from idsim.errors import IdsimError

__all__ = [
    "plot_layer_heatmap",
    "plot_layer_heatmaps",
    "plot_best_scores",
    "plot_identifiability",
    "plot_mean_index",
    "plot_index_by_layer",
    "save_figure",
    "sanitize_filename",
    "source_colors",
]

DPI = 150
SCORE_CMAP = "viridis"
NAN_COLOR = "#d9d9d9"
CORRECT_COLOR = "#2e9e44"
WRONG_COLOR = "#d1352b"
MISSING_COLOR = "#9e9e9e"

SCORE_COLUMNS = (
    "source",
    "source_layer",
    "source_layer_index",
    "target",
    "target_layer",
    "target_layer_index",
    "metric",
    "score",
    "same_architecture",
)
BEST_COLUMNS = (
    "target",
    "target_layer",
    "target_layer_index",
    "source",
    "best_source_layer",
    "score",
    "same_architecture",
    "metric",
)
IDENT_COLUMNS = ("target_layer", "target_layer_index", "identifiability_index", "correct")


# --------------------------------------------------------------------------- helpers


def sanitize_filename(name: object) -> str:
    """Turn ``name`` into a safe file-name stem: letters, digits, ``.``, ``_`` and ``-`` only.

    Runs of other characters (``/``, spaces, ``:``...) become one ``_``; leading dots and
    separators are removed so the result is never hidden, empty, ``.`` or ``..``.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
    stem = stem.strip("._-")
    return stem[:150] or "unnamed"


def source_colors(sources: Sequence[str]) -> dict[str, str]:
    """A colour per source, assigned in alphabetical order from a fixed qualitative palette.

    The first ten colours are ``tab10``; sources beyond ten get the light ``tab20`` shades,
    and beyond twenty the palette repeats.
    """
    tab20 = colormaps["tab20"].colors
    palette = [to_hex(c) for c in tab20[0::2]] + [to_hex(c) for c in tab20[1::2]]
    names = sorted({str(s) for s in sources})
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _check_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise IdsimError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise IdsimError(
            f"{what} is missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, df.columns)) or 'no columns'}"
        )


def _pick(df: pd.DataFrame, column: str, value: str | None, what: str) -> pd.DataFrame:
    """Rows of ``df`` whose ``column`` equals ``value``; ``None`` -> the only/first value."""
    if column not in df.columns:
        return df
    present = list(pd.unique(df[column].dropna()))
    if value is None:
        if not present:
            return df
        value = present[0]
        if len(present) > 1:
            warnings.warn(
                f"{what} holds {len(present)} values of {column!r} "
                f"({', '.join(map(str, present))}); plotting only {value!r}. "
                f"Pass {column}=... to choose.",
                UserWarning,
                stacklevel=3,
            )
    elif value not in present:
        raise IdsimError(
            f"{column} {value!r} not found in {what}; "
            f"valid: {', '.join(map(str, present)) or 'none'}"
        )
    return df[df[column] == value]


def _first(df: pd.DataFrame, column: str, default: str = "") -> str:
    if column not in df.columns:
        return default
    vals = df[column].dropna()
    return str(vals.iloc[0]) if len(vals) else default


def _ordered_layers(df: pd.DataFrame, name_col: str, index_col: str) -> list[str]:
    """Layer names in depth order (by index; ties and missing indices after, by name)."""
    idx = pd.to_numeric(df[index_col], errors="coerce")
    order = (
        pd.DataFrame({"name": df[name_col].astype(str), "index": idx})
        .groupby("name", sort=False)["index"]
        .min()
        .reset_index()
        .sort_values(["index", "name"], na_position="last", kind="stable")
    )
    return order["name"].tolist()


def _is_true(value: object) -> bool:
    try:
        return bool(value) and not pd.isna(value)
    except (TypeError, ValueError):
        return bool(value)


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _label_width_in(labels: Sequence[str], fontsize: float) -> float:
    """Rough width in inches of the longest label (average glyph ~0.6 em)."""
    longest = max((len(s) for s in labels), default=1)
    return longest * fontsize * 0.6 / 72.0


def save_figure(fig: Figure, path: str | PathLike[str]) -> Path:
    """Draw ``fig`` with Agg and write it as a PNG (parents created); the one way idsim saves a figure."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    with warnings.catch_warnings():
        # tight_layout complains about some outside-axes artists; bbox_inches fixes those.
        warnings.filterwarnings("ignore", message=".*[Tt]ight.?[Ll]ayout.*")
        fig.tight_layout()
        fig.savefig(out, dpi=DPI, bbox_inches="tight", pad_inches=0.15, facecolor="white")
    fig.clear()
    return out


def _score_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if math.isclose(lo, hi):
        pad = max(abs(lo) * 0.05, 0.05)
        return lo - pad, hi + pad
    return lo, hi


# --------------------------------------------------------------------------- heatmaps


def plot_layer_heatmap(
    scores: pd.DataFrame,
    source: str,
    path: str | PathLike[str],
    *,
    target: str | None = None,
    metric: str | None = None,
) -> Path:
    """Heatmap of the score of every (source layer, target layer) pair for one source.

    Target layers run along x, source layers along y (first layer at the bottom), both in
    depth order and labelled with their names. A white dot marks the best source layer of
    each target layer (the column maximum). NaN cells are grey. Colour range is [0, 1]
    when every finite score lies there, otherwise the data range.

    ``target`` / ``metric``: which target and metric to draw when ``scores`` holds several
    (default: the first, with a warning).
    """
    _check_columns(scores, SCORE_COLUMNS, "scores")
    present = list(pd.unique(scores["source"].dropna()))
    if source not in present:
        raise IdsimError(
            f"source {source!r} not in scores; valid: {', '.join(map(str, present)) or 'none'}"
        )
    df = scores[scores["source"] == source]
    df = _pick(df, "target", target, "scores")
    df = _pick(df, "metric", metric, "scores")
    if df.empty:
        raise IdsimError(f"no scores for source {source!r} to plot")

    target_name = _first(df, "target", "?")
    metric_name = _first(df, "metric", "score")
    same_arch = bool(df["same_architecture"].map(_is_true).any())

    src_layers = _ordered_layers(df, "source_layer", "source_layer_index")
    tgt_layers = _ordered_layers(df, "target_layer", "target_layer_index")
    grid = (
        df.assign(
            source_layer=df["source_layer"].astype(str),
            target_layer=df["target_layer"].astype(str),
            score=pd.to_numeric(df["score"], errors="coerce"),
        )
        .pivot_table(index="source_layer", columns="target_layer", values="score",
                     aggfunc="mean", dropna=False)
        .reindex(index=src_layers, columns=tgt_layers)
    )
    values = grid.to_numpy(dtype=float)
    n_src, n_tgt = values.shape
    vmin, vmax = _score_range(values)

    # --- geometry: cells of ~0.3-0.5 in, fonts follow the cell size
    area_w = _clamp(0.5 * n_tgt, 3.0, 11.0)
    area_h = _clamp(0.34 * n_src, 2.6, 10.0)
    cell_w, cell_h = area_w / n_tgt, area_h / n_src
    y_font = _clamp(cell_h * 72 * 0.62, 5.5, 10.0)
    x_font = _clamp(cell_w * 72 * 0.62, 5.5, 10.0)
    left = _label_width_in(src_layers, y_font) + 0.7
    bottom = _label_width_in(tgt_layers, x_font) * 0.75 + 0.7  # labels at 45 degrees
    fig = Figure(figsize=(left + area_w + 1.3, bottom + area_h + 1.0))
    ax = fig.add_subplot()

    cmap = colormaps[SCORE_CMAP].with_extremes(bad=NAN_COLOR)
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
    )

    ax.set_xticks(range(n_tgt), tgt_layers, fontsize=x_font, rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n_src), src_layers, fontsize=y_font)
    ax.set_xticks(np.arange(-0.5, n_tgt, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, n_src, 1.0), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=2.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(f"target layer ({target_name})", fontsize=10)
    ax.set_ylabel(f"source layer ({source})", fontsize=10)

    # --- best source layer per target layer
    cols, rows = [], []
    for j in range(n_tgt):
        column = values[:, j]
        if np.isfinite(column).any():
            cols.append(j)
            rows.append(int(np.nanargmax(column)))
    marker_size = (_clamp(min(cell_w, cell_h) * 72 * 0.38, 3.0, 9.0)) ** 2
    if cols:
        ax.scatter(cols, rows, s=marker_size, marker="o", facecolor="white",
                   edgecolor="black", linewidth=0.9, zorder=3)
    handles = [
        Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
               markeredgecolor="black", markersize=6, label="best source layer"),
    ]
    if np.isnan(values).any():
        handles.append(Patch(facecolor=NAN_COLOR, edgecolor="none", label="no score"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2,
              frameon=False, fontsize=8, borderaxespad=0.2, handletextpad=0.3,
              borderpad=0.2)

    title = f"source {source} → target {target_name} ({metric_name})"
    if same_arch:
        title += "\nsource has the target's architecture"
    ax.set_title(title, fontsize=11, pad=22)

    cbar_w = _clamp(0.05 * area_w, 0.14, 0.22)  # inches; full height of the heatmap
    cbar = fig.colorbar(image, ax=ax, fraction=cbar_w / area_w, pad=0.03,
                        aspect=area_h / cbar_w)
    cbar.set_label(metric_name, fontsize=10)
    cbar.ax.tick_params(labelsize=8)
    cbar.outline.set_visible(False)

    return save_figure(fig, path)


def plot_layer_heatmaps(
    scores: pd.DataFrame,
    out_dir: str | PathLike[str],
    *,
    target: str | None = None,
    metric: str | None = None,
) -> list[Path]:
    """One :func:`plot_layer_heatmap` per source, written to ``out_dir/heatmap_<source>.png``.

    Source names are sanitised with :func:`sanitize_filename` (``timm/vit`` ->
    ``timm_vit``); names that collide after sanitising get ``_2``, ``_3``... When
    ``target``/``metric`` are left at ``None`` and ``scores`` holds several, one file per
    combination is written, named ``heatmap_<source>[_to_<target>][_<metric>].png``.
    Returns the paths in order of first appearance of the sources.
    """
    _check_columns(scores, SCORE_COLUMNS, "scores")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def values(column: str, chosen: str | None) -> list:
        if chosen is not None:
            return [chosen]
        return list(pd.unique(scores[column].dropna())) or [None]

    targets, metrics = values("target", target), values("metric", metric)
    sources = list(pd.unique(scores["source"].dropna()))
    if not sources:
        raise IdsimError("scores has no rows to plot")

    paths: list[Path] = []
    used: set[str] = set()
    for src in sources:
        for tgt in targets:
            for met in metrics:
                subset = scores[scores["source"] == src]
                if tgt is not None:
                    subset = subset[subset["target"] == tgt]
                if met is not None:
                    subset = subset[subset["metric"] == met]
                if subset.empty:
                    continue
                stem = f"heatmap_{sanitize_filename(src)}"
                if len(targets) > 1:
                    stem += f"_to_{sanitize_filename(tgt)}"
                if len(metrics) > 1:
                    stem += f"_{sanitize_filename(met)}"
                name, k = stem, 2
                while name.lower() in used:
                    name, k = f"{stem}_{k}", k + 1
                used.add(name.lower())
                paths.append(
                    plot_layer_heatmap(subset, src, out / f"{name}.png", target=tgt, metric=met)
                )
    return paths


# --------------------------------------------------------------------------- best scores


def plot_best_scores(
    best: pd.DataFrame,
    path: str | PathLike[str],
    *,
    target: str | None = None,
    metric: str | None = None,
) -> Path:
    """Grouped bars of the best score each source reaches, per target layer.

    x: target layers in depth order; one bar per source (colours from
    :func:`source_colors`); the source with the target's architecture is hatched with a
    black edge and labelled "(target architecture)" in the legend. A star marks the
    winning bar of each target layer. The figure widens with the number of bars. With
    bootstrap intervals (``ci_low``/``ci_high``), each bar carries its interval.
    """
    _check_columns(best, BEST_COLUMNS, "best")
    df = _pick(best, "target", target, "best")
    df = _pick(df, "metric", metric, "best")
    if df.empty:
        raise IdsimError("best has no rows to plot")
    target_name = _first(df, "target", "?")
    metric_name = _first(df, "metric", "score")

    df = df.assign(
        source=df["source"].astype(str),
        target_layer=df["target_layer"].astype(str),
        score=pd.to_numeric(df["score"], errors="coerce"),
    )
    layers = _ordered_layers(df, "target_layer", "target_layer_index")
    same = df.groupby("source")["same_architecture"].agg(lambda s: s.map(_is_true).any())
    own = sorted(same[same].index)
    # target architecture first, the rest alphabetically: a stable, readable order
    sources = own + sorted(s for s in pd.unique(df["source"]) if s not in own)
    colors = source_colors(sources)
    grid = (
        df.pivot_table(index="target_layer", columns="source", values="score",
                       aggfunc="max", dropna=False)
        .reindex(index=layers, columns=sources)
    )
    values = grid.to_numpy(dtype=float)
    n_layers, n_src = values.shape
    bounds = None
    if {"ci_low", "ci_high"} <= set(df.columns):  # bootstrap intervals (stats.bootstrap)
        bounds = [df.pivot_table(index="target_layer", columns="source", values=c, aggfunc="max", dropna=False)
                  .reindex(index=layers, columns=sources).to_numpy(dtype=float) for c in ("ci_low", "ci_high")]

    # --- geometry
    group_w_in = _clamp(0.09 * n_src + 0.3, 0.55, 1.6)
    plot_w = _clamp(group_w_in * n_layers, 5.0, 30.0)
    x_font = _clamp(plot_w / n_layers * 72 * 0.3, 7.0, 10.0)
    bottom = _label_width_in(layers, x_font) * 0.75 + 0.6
    legend_w = _label_width_in([f"{s} (target architecture)" for s in sources], 9) + 0.6
    fig = Figure(figsize=(plot_w + 1.2 + legend_w, _clamp(3.2 + 0.1 * plot_w, 3.8, 6.0) + bottom))
    ax = fig.add_subplot()

    x = np.arange(n_layers)
    slot = 0.84 / n_src
    for k, src in enumerate(sources):
        offsets = x - 0.42 + slot * (k + 0.5)
        heights = np.nan_to_num(values[:, k], nan=0.0)
        is_own = src in own
        ax.bar(
            offsets,
            heights,
            width=slot * 0.92,
            color=colors[src],
            edgecolor="black" if is_own else "none",
            linewidth=1.1 if is_own else 0.0,
            hatch="///" if is_own else None,
            label=f"{src} (target architecture)" if is_own else src,
            zorder=2,
        )
        if bounds is not None:
            lo_k, hi_k = bounds[0][:, k], bounds[1][:, k]
            ok = np.isfinite(lo_k) & np.isfinite(hi_k) & np.isfinite(values[:, k])
            if ok.any():
                ax.errorbar(offsets[ok], values[ok, k],
                            yerr=[np.clip(values[ok, k] - lo_k[ok], 0, None), np.clip(hi_k[ok] - values[ok, k], 0, None)],
                            fmt="none", ecolor="#333333", elinewidth=0.8, capsize=1.5, zorder=3)

    finite = values[np.isfinite(values)]
    if bounds is not None:  # the axis holds the intervals too
        finite = np.concatenate([finite, *(b[np.isfinite(b)] for b in bounds)])
    lo, hi = _score_range(values)
    data_lo = min(0.0, float(finite.min())) if finite.size else 0.0
    data_hi = max(0.0, float(finite.max())) if finite.size else 1.0
    if lo == 0.0 and hi == 1.0:
        y_lo, y_hi = 0.0, 1.0
    else:
        y_lo, y_hi = data_lo, data_hi
    span = (y_hi - y_lo) or 1.0
    star_pad = 0.035 * span

    # --- stars above winners
    star_x, star_y = [], []
    for i in range(n_layers):
        row = values[i]
        if np.isfinite(row).any():
            k = int(np.nanargmax(row))
            star_x.append(x[i] - 0.42 + slot * (k + 0.5))
            star_y.append(max(row[k], 0.0) + star_pad)
    star_size = _clamp(slot * plot_w / n_layers * 72 * 1.1, 7.0, 13.0)
    if star_x:
        ax.plot(star_x, star_y, linestyle="none", marker="*", markersize=star_size,
                markerfacecolor="gold", markeredgecolor="black", markeredgewidth=0.7,
                zorder=4, label="best source for the layer")

    ax.set_ylim(y_lo - (0.04 * span if y_lo < 0 else 0.0), y_hi + 0.12 * span)
    if y_lo < 0:
        ax.axhline(0.0, color="black", linewidth=0.8, zorder=3)
    for i in range(0, n_layers, 2):  # faint bands separate the groups
        ax.axvspan(i - 0.5, i + 0.5, color="#f2f2f2", zorder=0, linewidth=0)
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.set_xticks(x, layers, rotation=45, ha="right", rotation_mode="anchor", fontsize=x_font)
    ax.set_xlabel(f"target layer ({target_name})", fontsize=10)
    ax.set_ylabel(f"best {metric_name}", fontsize=10)
    ax.grid(axis="y", color="#cccccc", linewidth=0.6, zorder=1)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Best score per source, target {target_name} ({metric_name})", fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    if star_x:  # the star entry goes last, under the sources
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize=9, title="source", title_fontsize=9, alignment="left",
              borderaxespad=0.0)

    return save_figure(fig, path)


# --------------------------------------------------------------------------- identifiability


def plot_identifiability(ident: pd.DataFrame, path: str | PathLike[str]) -> Path:
    """Bars of the identifiability index per target layer (depth order).

    Green where ``correct`` is true, red where it is false; layers whose index is NaN get
    a grey "n/a" at zero. With bootstrap columns, whiskers show the index's interval and each
    label adds P(correct). A black line marks zero. When ``ident`` has ``target`` and/or
    ``metric`` columns they go in the title (several values: the first, with a warning).
    """
    _check_columns(ident, IDENT_COLUMNS, "ident")
    df = _pick(ident, "target", None, "ident")
    df = _pick(df, "metric", None, "ident")
    if df.empty:
        raise IdsimError("ident has no rows to plot")

    df = df.assign(
        target_layer=df["target_layer"].astype(str),
        identifiability_index=pd.to_numeric(df["identifiability_index"], errors="coerce"),
        _correct=df["correct"].map(_is_true),
    )
    layers = _ordered_layers(df, "target_layer", "target_layer_index")
    per_layer = df.groupby("target_layer").agg(
        index=("identifiability_index", "mean"), correct=("_correct", "all")
    ).reindex(layers)
    values = per_layer["index"].to_numpy(dtype=float)
    correct = per_layer["correct"].fillna(False).to_numpy(dtype=bool)
    n = len(layers)
    ok = np.isfinite(values)
    ci = None
    if {"index_ci_low", "index_ci_high"} <= set(df.columns):  # bootstrap intervals (stats.bootstrap)
        ci = df.groupby("target_layer")[["index_ci_low", "index_ci_high"]].mean().reindex(layers).to_numpy(dtype=float)
        p_correct = df.groupby("target_layer")["p_correct"].mean().reindex(layers).to_numpy(dtype=float) \
            if "p_correct" in df else None

    plot_w = _clamp(0.42 * n + 1.0, 5.0, 16.0)
    x_font = _clamp(plot_w / n * 72 * 0.32, 6.5, 10.0)
    bottom = _label_width_in(layers, x_font) * 0.75 + 0.6
    fig = Figure(figsize=(plot_w + 1.4, 3.4 + bottom))
    ax = fig.add_subplot()

    x = np.arange(n)
    colors = [CORRECT_COLOR if c else WRONG_COLOR for c in correct]
    ax.bar(x[ok], values[ok], width=0.7, color=[c for c, k in zip(colors, ok) if k],
           edgecolor="none", zorder=2)
    ax.axhline(0.0, color="black", linewidth=0.9, zorder=3)
    if ci is not None:
        has = ok & np.isfinite(ci).all(1)
        if has.any():
            ax.errorbar(x[has], values[has], yerr=[np.clip(values[has] - ci[has, 0], 0, None),
                                                   np.clip(ci[has, 1] - values[has], 0, None)],
                        fmt="none", ecolor="#333333", elinewidth=0.9, capsize=2.5, zorder=4)

    finite = values[ok] if ci is None else np.concatenate([values[ok], ci[np.isfinite(ci)]])
    y_lo = min(0.0, float(finite.min())) if finite.size else -1.0
    y_hi = max(0.0, float(finite.max())) if finite.size else 1.0
    span = (y_hi - y_lo) or 1.0
    ax.set_ylim(y_lo - (0.12 if y_lo < 0 else 0.03) * span,
                y_hi + (0.12 if y_hi > 0 else 0.03) * span)

    label_font = _clamp(x_font - 1.0, 6.0, 8.0)
    for xi, v in zip(x, values):
        if not np.isfinite(v):
            ax.text(xi, 0.02 * span, "n/a", ha="center", va="bottom", fontsize=label_font,
                    color=MISSING_COLOR, zorder=4)
        elif n <= 30:
            label = f"{v:.2f}"
            if ci is not None and p_correct is not None and np.isfinite(p_correct[xi]):
                label += f"\nP={p_correct[xi]:.2f}"
            top = max(v, ci[xi, 1]) if ci is not None and np.isfinite(ci[xi, 1]) and v >= 0 else v
            bottom = min(v, ci[xi, 0]) if ci is not None and np.isfinite(ci[xi, 0]) and v < 0 else v
            ax.text(xi, (top if v >= 0 else bottom) + (0.015 if v >= 0 else -0.015) * span, label,
                    ha="center", va="bottom" if v >= 0 else "top", fontsize=label_font,
                    color="#333333", zorder=4)

    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks(x, layers, rotation=45, ha="right", rotation_mode="anchor", fontsize=x_font)
    target_name = _first(df, "target", "")
    metric_name = _first(df, "metric", "")
    ax.set_xlabel(f"target layer ({target_name})" if target_name else "target layer",
                  fontsize=10)
    ax.set_ylabel("identifiability index", fontsize=10)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6, zorder=1)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    n_ok = int(ok.sum())
    n_right = int((correct & ok).sum())
    title = "Identifiability per target layer"
    if target_name:
        title += f", target {target_name}"
    if metric_name:
        title += f" ({metric_name})"
    ax.set_title(f"{title}\n{n_right} of {n_ok} layers identify the target architecture",
                 fontsize=11, pad=20)
    handles = [
        Patch(facecolor=CORRECT_COLOR, label="correct (target architecture wins)"),
        Patch(facecolor=WRONG_COLOR, label="wrong (another source wins)"),
    ]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(handles),
              frameon=False, fontsize=8, borderaxespad=0.2, handlelength=1.2,
              columnspacing=1.2)

    return save_figure(fig, path)


# --------------------------------------------------------------------------- sweep figures

def _levels(values: pd.Series) -> list:
    """Distinct values in a readable order: numbers ascending, text in order of appearance."""
    uniq = list(dict.fromkeys(values.tolist()))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in uniq):
        return sorted(uniq)
    return uniq


def _job_means(jobs: pd.DataFrame, ident: pd.DataFrame) -> pd.DataFrame:
    """One row per job: its swept values, state and mean identifiability index over target layers."""
    df = jobs.copy()
    if not ident.empty:
        means = ident.groupby("job")["identifiability_index"].mean()
        df["mean_index"] = df["job"].map(means)
    else:
        df["mean_index"] = float("nan")
    return df


def _cell_text(state: str, value: float) -> tuple[str, str]:
    if state != "done":
        return ("failed" if state == "failed" else state), "#b2182b"
    if value is None or not math.isfinite(value):
        return "n/a", "#777777"
    return f"{value:+.3f}", "black"


def plot_mean_index(jobs: pd.DataFrame, ident: pd.DataFrame, swept: Sequence[str], path: Path) -> Path:
    """Mean identifiability index over target layers for every job, laid out by the swept variables.

    One swept variable: bars. Two or more: a heatmap, columns the variable with the fewest values,
    rows every combination of the others; failed jobs are marked "failed", undefined indices "n/a".
    """

    df = _job_means(jobs, ident)
    swept = [k for k in swept if k in df.columns]
    fig = Figure()
    if len(swept) <= 1:
        key = swept[0] if swept else "job"
        order = _levels(df[key])
        labels = [str(v) for v in order]
        vals = [df.loc[df[key] == v, "mean_index"].mean() for v in order]
        states = [df.loc[df[key] == v, "state"].iloc[0] for v in order]
        fig.set_size_inches(max(4.0, 0.8 * len(order) + 2.0), 3.8)
        ax = fig.add_subplot()
        heights = [v if math.isfinite(v) else 0.0 for v in vals]
        ax.bar(range(len(order)), heights, color=["#2166ac" if h >= 0 else "#b2182b" for h in heights])
        for xi, (h, v, st) in enumerate(zip(heights, vals, states)):
            text, color = _cell_text(st, v)
            ax.text(xi, h, text, ha="center", va="bottom" if h >= 0 else "top", fontsize=8, color=color)
        ax.axhline(0.0, color="black", linewidth=0.8)
        long = max(map(len, labels), default=0) > 8
        ax.set_xticks(range(len(order)), labels, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlabel(key)
        ax.set_ylabel("mean identifiability index")
    else:
        col = min(reversed(swept), key=lambda k: len(_levels(df[k])))
        rows = [k for k in swept if k != col]
        col_levels = _levels(df[col])
        row_keys = list(dict.fromkeys(tuple(r) for r in df[rows].itertuples(index=False, name=None)))
        grid = np.full((len(row_keys), len(col_levels)), np.nan)
        texts = [[("", "black")] * len(col_levels) for _ in row_keys]
        for _, r in df.iterrows():
            i = row_keys.index(tuple(r[k] for k in rows))
            j = col_levels.index(r[col])
            v = r["mean_index"]
            grid[i, j] = v if r["state"] == "done" else np.nan
            texts[i][j] = _cell_text(r["state"], v)
        finite = grid[np.isfinite(grid)]
        lim = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-6)
        row_labels = [", ".join(f"{k}={v}" for k, v in zip(rows, key)) for key in row_keys]
        fig.set_size_inches(max(4.5, 1.3 * len(col_levels) + 0.09 * max(map(len, row_labels)) + 1.5),
                            max(2.5, 0.45 * len(row_keys) + 1.5))
        ax = fig.add_subplot()
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i, row in enumerate(texts):
            for j, (text, color) in enumerate(row):
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(len(col_levels)), [str(v) for v in col_levels])
        ax.set_yticks(range(len(row_keys)), row_labels)
        ax.set_xlabel(col)
        fig.colorbar(im, ax=ax, label="mean identifiability index")
    n_done = int((df["state"] == "done").sum())
    ax.set_title(f"Identifiability index, mean over target layers ({n_done} of {len(df)} jobs done)", fontsize=10)
    return save_figure(fig, path)


def plot_index_by_layer(ident: pd.DataFrame, swept: Sequence[str], path: Path) -> Path:
    """Identifiability index per target layer: one panel per target model, one line per job."""

    targets = list(dict.fromkeys(ident["target"].astype(str))) if "target" in ident else [""]
    others = [k for k in swept if k != "target" and k in ident.columns]
    fig = Figure(figsize=(6.5, 3.2 * len(targets)))
    for n, target in enumerate(targets):
        ax = fig.add_subplot(len(targets), 1, n + 1)
        part = ident[ident["target"].astype(str) == target] if target else ident
        layers = part.drop_duplicates("target_layer_index").sort_values("target_layer_index")
        for job, g in part.groupby("job", sort=False):
            g = g.sort_values("target_layer_index")
            label = ", ".join(f"{k}={g[k].iloc[0]}" for k in others) or str(job)
            ax.plot(g["target_layer_index"], g["identifiability_index"], marker="o", markersize=3, label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(layers["target_layer_index"], layers["target_layer"].astype(str), rotation=45, ha="right",
                      fontsize=7)
        ax.set_ylabel("identifiability index")
        ax.set_xlabel("target layer")
        ax.set_title(f"target {target}" if target else "identifiability index by target layer", fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="best")
    return save_figure(fig, path)
