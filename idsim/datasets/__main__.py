"""``python -m idsim.datasets show dataset=<name> [dataset.key=value ...] [--out PATH] [--n 48] [--cols 8]``.

Composes the configuration exactly as ``run.py`` does (Hydra, ``conf/``, the same overrides),
builds the probe set with :func:`idsim.datasets.load_probe_set` and writes a contact sheet: the
first ``--n`` images as thumbnails in a grid, each captioned with its stimulus id and label.
Use it to see what a run would feed the models before spending time on one. The sheet goes to
``outputs/contact_sheets/<name>.png`` unless ``--out`` says otherwise; the path and a one-line
description of the set are printed. Bad arguments print ``idsim: error: ...`` and exit with 2.
"""
from __future__ import annotations

import argparse
import collections
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..errors import IdsimError
from .base import ProbeSet

PAD = 6          # pixels between and around cells
CAPTION = 30     # caption height under each thumbnail (two lines: stimulus id, label)
HEADER = 28      # title band at the top
FONT_SIZE = 11
BACKGROUND = (255, 255, 255)
CELL = (128, 128, 128)  # letterbox colour behind thumbnails that are not square


def sheet_size(n: int, cols: int, thumb: int) -> tuple[int, int]:
    """Pixel size of the sheet for ``n`` images: ``min(cols, n)`` columns, as many rows as needed."""
    c = max(1, min(cols, n))
    rows = math.ceil(n / c)
    return c * (thumb + PAD) + PAD, HEADER + rows * (thumb + CAPTION + PAD) + PAD


def _font(size: int = FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """``text`` shortened with an ellipsis (keeping its end, where ids differ) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    for cut in range(1, len(text)):
        s = "…" + text[cut:]
        if draw.textlength(s, font=font) <= width:
            return s
    return "…"


def describe(probe: ProbeSet) -> str:
    """One line: how many images, and the labels with their counts (most frequent first)."""
    labels = [probe.label(i) for i in range(len(probe))]
    named = [lab for lab in labels if lab is not None]
    if not named:
        return f"{len(probe)} images, no labels"
    counts = collections.Counter(named).most_common()
    shown = ", ".join(f"{lab} {k}" for lab, k in counts[:6]) + (", ..." if len(counts) > 6 else "")
    unlabelled = len(labels) - len(named)
    extra = f", {unlabelled} unlabelled" if unlabelled else ""
    return f"{len(probe)} images, {len(counts)} labels ({shown}){extra}"


def contact_sheet(probe: ProbeSet, n: int = 48, cols: int = 8, thumb: int = 128, title: str | None = None) -> Image.Image:
    """The first ``n`` images of ``probe`` (all if fewer) as captioned thumbnails in a grid."""
    n = min(n, len(probe))
    if n < 1:
        raise IdsimError(f"probe set {probe.name} has no images to show")
    c = max(1, min(cols, n))
    sheet = Image.new("RGB", sheet_size(n, cols, thumb), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    draw.text((PAD, PAD), _fit(draw, title or probe.name, sheet.width - 2 * PAD, font), fill=(0, 0, 0), font=font)
    for i in range(n):
        x = PAD + (i % c) * (thumb + PAD)
        y = HEADER + (i // c) * (thumb + CAPTION + PAD)
        img = ImageOps.contain(probe.image(i), (thumb, thumb), Image.Resampling.LANCZOS)  # up or down
        draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=CELL)
        sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        label = probe.label(i)
        draw.text((x, y + thumb + 2), _fit(draw, probe.stimulus_id(i), thumb, font), fill=(0, 0, 0), font=font)
        if label is not None:
            draw.text((x, y + thumb + 2 + FONT_SIZE + 3), _fit(draw, str(label), thumb, font), fill=(90, 90, 90),
                      font=font)
    return sheet


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are idsim's one-line errors (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise IdsimError(f"{message} (usage: python -m idsim.datasets show dataset=NAME [dataset.KEY=VALUE ...]"
                         f" [--out PATH] [--n N] [--cols C])")


def _positive(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {v}")
        return v
    return parse


def compose_dataset(overrides: Sequence[str]):
    """The ``dataset`` node (a DictConfig of the set's options class, interpolations unresolved) of the
    config ``run.py`` would compose from ``overrides``; :func:`~idsim.datasets.load_probe_set` builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .. import schema
    from ..config import CONF_DIR, check_overrides

    bad = [o for o in overrides if "=" not in o and not o.startswith("~")]
    if bad:
        raise IdsimError(f"unexpected argument {bad[0]!r}: overrides are key=value, e.g. dataset=folder"
                         f" dataset.root=/data/images")
    check_overrides(list(overrides))
    schema.register()  # dataset/base_<name> and the run's schemas, which the YAML files of conf/ extend
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", list(overrides))
        return cfg.dataset
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if first.startswith("Could not override"):
            first += " (no such key: python run.py --cfg job dataset=NAME lists a dataset's keys)"
        raise IdsimError(f"bad override: {first}") from err


def show(overrides: Sequence[str], out: str | None = None, n: int = 48, cols: int = 8, thumb: int = 128) -> Path:
    """Build the configured probe set and write its contact sheet; returns the PNG's path."""
    from . import load_probe_set

    if out is not None and Path(out).suffix.lower() != ".png":
        raise IdsimError(f"--out must name a .png file, got {out}")
    probe = load_probe_set(compose_dataset(overrides))
    path = Path(out) if out else Path("outputs") / "contact_sheets" / f"{probe.name}.png"
    desc = describe(probe)
    shown = min(n, len(probe))
    sheet = contact_sheet(probe, n, cols, thumb, title=f"{probe.name}: {desc}; first {shown} shown")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    print(f"{path}")
    print(f"{probe.name}: {desc}; first {shown} shown")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m idsim.datasets show ...``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="python -m idsim.datasets show", description="Write a contact sheet PNG of a probe set.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=folder dataset.root=/data/images")
    p.add_argument("--out", default=None, help="PNG path (default outputs/contact_sheets/<name>.png)")
    p.add_argument("--n", type=_positive(1), default=48, help="how many images to show (the first N; default 48)")
    p.add_argument("--cols", type=_positive(1), default=8, help="thumbnails per row (default 8)")
    p.add_argument("--thumb", type=_positive(16), default=128, help="thumbnail side in pixels (default 128)")
    try:
        if not argv or argv[0] != "show":
            if argv and argv[0] in ("-h", "--help"):
                p.print_help()
                return 0
            raise IdsimError(f"unknown command {argv[0]!r}; valid: show" if argv else "missing command; valid: show")
        a = p.parse_intermixed_args(argv[1:])
        show(a.overrides, a.out, a.n, a.cols, a.thumb)
    except IdsimError as e:
        print(f"idsim: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
