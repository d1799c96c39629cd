"""The short summary printed at the end of a run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def print_summary(ident: pd.DataFrame, verdict: str, out_dir: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for metric, g in ident.groupby("metric", sort=False):
        table = Table(title=f"Identifiability of {g['target'].iloc[0]} ({metric})", title_justify="left")
        for col, kw in (("target layer", {}), ("best source", {}), ("best source layer", {}), ("score", {"justify": "right"}),
                        ("correct", {"justify": "center"}), ("index", {"justify": "right"})):
            table.add_column(col, **kw)
        for _, r in g.sort_values("target_layer_index").iterrows():
            idx = r["identifiability_index"]
            table.add_row(str(r["target_layer"]), str(r["best_source"]), str(r["best_source_layer"]), f"{r['best_score']:.3f}",
                          "[green]yes[/]" if r["correct"] else "[red]no[/]", "n/a" if pd.isna(idx) else f"{idx:+.3f}")
        console.print(table)
    console.print(verdict, soft_wrap=True)
    if out_dir is not None:
        console.print(f"results: {out_dir}", soft_wrap=True)
