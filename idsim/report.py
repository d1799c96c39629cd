"""The short summary printed at the end of a run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def _interval(r, low: str, high: str) -> str:
    if low in r and pd.notna(r[low]) and pd.notna(r[high]):
        return f"[{r[low]:+.3f}, {r[high]:+.3f}]"
    return ""


def print_summary(ident: pd.DataFrame, verdict: str, out_dir: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # logs and pipes: wide enough for the table, not the 80 columns rich assumes
        console = Console(highlight=False, width=160)
    boot = "p_correct" in ident
    for metric, g in ident.groupby("metric", sort=False):
        table = Table(title=f"Identifiability of {g['target'].iloc[0]} ({metric})", title_justify="left")
        cols = [("target layer", {}), ("best source", {}), ("best source layer", {}), ("score", {"justify": "right"}),
                ("correct", {"justify": "center"}), ("rank", {"justify": "right"}), ("index", {"justify": "right"})]
        if boot:
            cols += [("index CI", {"justify": "right"}), ("P(correct)", {"justify": "right"}), ("p", {"justify": "right"})]
        for col, kw in cols:
            table.add_column(col, **kw)
        for _, r in g.sort_values("target_layer_index").iterrows():
            idx = r["identifiability_index"]
            rank = r.get("rank")
            row = [str(r["target_layer"]), str(r["best_source"]), str(r["best_source_layer"]), f"{r['best_score']:.3f}",
                   "[green]yes[/]" if r["correct"] else "[red]no[/]", "-" if pd.isna(rank) else str(int(rank)),
                   "n/a" if pd.isna(idx) else f"{idx:+.3f}"]
            if boot:
                row += [_interval(r, "index_ci_low", "index_ci_high") or "-",
                        f"{r['p_correct']:.2f}" if pd.notna(r["p_correct"]) else "-",
                        f"{r['p_value']:.3g}" if pd.notna(r["p_value"]) else "-"]
            table.add_row(*row)
        console.print(table)
    console.print(verdict, soft_wrap=True)
    if out_dir is not None:
        console.print(f"results: {out_dir}", soft_wrap=True)
