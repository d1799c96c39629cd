"""Everything a run writes goes through one :class:`RunWriter`: CSVs, figures, the console summary, W&B.

Files of a run folder (see the README's *Outputs*): ``config.yaml``, ``target_units.csv``,
``ceilings.csv`` (recording targets), ``bootstrap.csv`` (with ``bootstrap=N``),
``scores.csv`` (rewritten after every source, so a failure keeps what was done),
``identifiability.csv``, ``best_scores.csv``, ``figures/*.png``, ``wandb/``.

A run never mixes its files with another run's: when it starts in a folder that holds an earlier
run's results, :func:`archive_previous` moves them (with that run's ``status.json``) to
``previous/<start time>/`` first.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .jobs import uninterrupted

log = logging.getLogger("idsim")


#: what a run writes into its folder (``archive_previous`` moves them out of a reused folder)
RESULT_FILES = ("config.yaml", "target_units.csv", "scores.csv", "identifiability.csv", "best_scores.csv", "figures",
                "wandb")
PREVIOUS_DIR = "previous"


def archive_previous(out_dir: Path, status: dict | None = None) -> Path | None:
    """Move an earlier run's results out of ``out_dir`` into ``previous/<its start time>/``; the new folder, or None.

    ``status`` (the earlier run's ``status.json``, if any) is saved beside them. Hydra's own
    ``.hydra/`` and the log (which every run appends to) stay.
    """
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RESULT_FILES if (out_dir / name).exists()]
    if not found:
        return None
    stamp = str((status or {}).get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    stamp = "".join(c if c.isalnum() or c in "-T" else "-" for c in stamp[:19])
    dest, n = out_dir / PREVIOUS_DIR / stamp, 1
    while dest.exists():
        n += 1
        dest = out_dir / PREVIOUS_DIR / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for path in found:
        os.replace(path, dest / path.name)
    if status:
        (dest / "status.json").write_text(json.dumps(status, indent=2, default=str) + "\n")
    return dest


class RunWriter:
    """Writes one run's outputs into ``out_dir`` and mirrors them to the tracker (W&B or nothing).

    Use as a context manager: the tracker is finished (as failed when an exception escapes), so
    runs of a multirun never merge. Off the critical path: the tracker starts (W&B spawns its
    service) in a background thread while the target is extracted, and each source's heatmap is
    drawn in one background thread (matplotlib is only ever used there) while the next source is
    extracted; what is logged to the tracker queues on that thread too (in order), so a job whose
    features are all cached never waits for W&B to start. Leaving the context waits for all of
    it, and raises the first error of the background work when the run itself raised none.
    """

    def __init__(self, out_dir: Path, config: Mapping[str, Any], logger: Any, name: str, plots: bool = True):
        from .tracking import check_credentials, make_tracker

        check_credentials(logger)  # the tracker starts in the background: what it would refuse is refused now
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        moved = archive_previous(self.out)  # from Python, or a job whose start did not already do it
        if moved is not None:
            log.info("the results of an earlier run in %s were moved to %s", self.out, moved)
        self.plots = plots
        self._parts: list[pd.DataFrame] = []
        self._boot: list[pd.DataFrame] = []
        self._written: dict[Path, list] = {}  # each CSV's columns and types as written
        self._figures_done: list = []
        self._logged: list = []
        self._t0 = time.perf_counter()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idsim-figures")
        # W&B first (its start overlaps the extraction); figures queue behind it on the same thread
        self._tracker = self._pool.submit(make_tracker, logger, self.out, dict(config), name=name)

    @property
    def tracker(self):
        return self._tracker.result()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._pool.shutdown(wait=True)
            failed = next((f.exception() for f in self._logged if f.exception() is not None), None)
        finally:
            if self._tracker.exception() is None:
                self.tracker.finish(failed=exc_type is not None or failed is not None)
        if exc_type is None and failed is not None:
            raise failed

    def _track(self, method: str, *args) -> None:
        """Call ``tracker.<method>(*args)`` on the background thread, after what was queued before."""
        self._logged.append(self._pool.submit(lambda: getattr(self.tracker, method)(*args)))

    def config(self, cfg) -> None:
        from omegaconf import OmegaConf

        OmegaConf.save(cfg, self.out / "config.yaml", resolve=True)

    def timings(self, seconds: Mapping[str, float]) -> None:
        """``timings.json``: seconds per phase of the run (prepare, extract:target, extract:<source>, score:<source>,
        identify, write)."""
        import json

        (self.out / "timings.json").write_text(json.dumps({k: round(v, 4) for k, v in seconds.items()}, indent=1) + "\n")

    def target_units(self, units: pd.DataFrame) -> None:
        write_table(self.out / "target_units.csv", units)
        self._track("log_table", "target_units", units)

    def ceilings(self, ceilings: pd.DataFrame | None) -> None:
        """A recording target's per-region reliability and noise ceilings (``ceilings.csv``); None: nothing."""
        if ceilings is None:
            return
        write_table(self.out / "ceilings.csv", ceilings)
        self._track("log_table", "ceilings", ceilings)

    def add_scores(self, part: pd.DataFrame) -> pd.DataFrame:
        """Add one source's rows to ``scores.csv``; returns all rows so far."""
        self._add_rows(self.out / "scores.csv", self._parts, part)
        scores = pd.concat(self._parts, ignore_index=True)
        if self.plots:  # this source's heatmap, drawn while the next source is extracted
            from . import plots

            self._figures_done.append(self._pool.submit(plots.plot_layer_heatmaps, part, self.out / "figures"))
        return scores

    def add_bootstrap(self, part: pd.DataFrame) -> None:
        """Add one source's scores on stimulus resamples to ``bootstrap.csv``."""
        self._add_rows(self.out / "bootstrap.csv", self._boot, part)

    def _add_rows(self, path: Path, parts: list[pd.DataFrame], part: pd.DataFrame) -> None:
        """Write one source's rows as soon as it is scored (a stopped run keeps them): appended to ``path`` when
        its columns and types are those written so far, else the file is rewritten whole (the bootstrap's
        file grows to ~10^5 rows a source: rewriting it after every source cost more than writing it)."""
        parts.append(part)
        kinds = list(zip(part.columns, part.dtypes.astype(str)))
        if len(parts) > 1 and self._written.get(path) == kinds:
            write_table(path, part, append=True)
            return
        whole = pd.concat(parts, ignore_index=True)
        write_table(path, whole)
        self._written[path] = list(zip(whole.columns, whole.dtypes.astype(str)))

    @property
    def scores(self) -> pd.DataFrame:
        return pd.concat(self._parts, ignore_index=True) if self._parts else pd.DataFrame()

    def finish(self, ident: pd.DataFrame, best: pd.DataFrame, verdict: str) -> dict[str, Path]:
        """The identifiability tables, figures, console summary and tracker summary of a finished run."""
        write_table(self.out / "identifiability.csv", ident)
        write_table(self.out / "best_scores.csv", best)
        figures = self._figures(ident, best) if self.plots else {}
        from .report import print_summary

        print_summary(ident, verdict, self.out)
        self._track("log_table", "scores", self.scores)
        self._track("log_table", "identifiability", ident)
        self._track("log_table", "best_scores", best)
        self._track("log_images", figures)
        index = ident["identifiability_index"] if "identifiability_index" in ident else pd.Series(dtype=float)
        self._track("summary", {"verdict": verdict, "n_correct": int(ident["correct"].sum()) if len(ident) else 0,
                              "n_target_layers": len(ident),
                              "mean_identifiability_index": float(index.mean()) if index.notna().any() else None,
                              "seconds": time.perf_counter() - self._t0})
        return figures

    def _figures(self, ident: pd.DataFrame, best: pd.DataFrame) -> dict[str, Path]:
        from . import plots

        folder = self.out / "figures"
        last = [self._pool.submit(plots.plot_best_scores, best, folder / "best_scores.png"),
                self._pool.submit(plots.plot_identifiability, ident, folder / "identifiability.png")]
        figs = {p.stem: p for done in self._figures_done for p in done.result()}
        figs["best_scores"], figs["identifiability"] = (f.result() for f in last)
        return figs


def write_table(path: Path, frame: pd.DataFrame, append: bool = False) -> None:
    """Write a result table so that a stopped run never leaves it half written: its CSV text is made first,
    then appended in one write (``append``: rows only) or written to a temporary file that replaces ``path``;
    a stopping signal meanwhile waits until it is done (:func:`idsim.jobs.uninterrupted`)."""
    with uninterrupted():
        text = frame.to_csv(index=False, header=not append)
        if append:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:  # a failed write (a full disk) leaves no hidden file behind
            tmp.unlink(missing_ok=True)


def units_table(target, unit_ratio: float, skipped_images: int = 0) -> pd.DataFrame:
    """Per target layer: units, sampled, zero-variance dropped, kept, scored (``target_units.csv``), and the
    number of unreadable image files the probe set skipped (``dataset.skip_unreadable``)."""
    rows = []
    for i, (name, d) in enumerate(target.layers.items()):
        rows.append({"target_layer": name, "target_layer_index": i, "n_units": d.n_units, "n_sampled": d.n_sampled,
                     "approximate": d.approximate, "n_constant": d.n_constant, "n_kept": d.n_kept,
                     "n_scored": d.units.shape[1] if d.units is not None else d.n_kept, "unit_ratio": unit_ratio,
                     "n_images_skipped": skipped_images})
    return pd.DataFrame(rows)
