"""``python -m idsim.recordings``: write recordings in idsim's format.

- ``convert-allen FILE... --out resp.nc``: Allen Brain Observatory two-photon NWB files of
  ``three_session_B`` sessions (natural scenes) to one assembly, and their scenes to
  ``resp_stimuli/<scene>.png`` (the file's ``stimuli`` attribute names the folder);
- ``simulate OVERRIDE... --out sim.nc``: a network target (``target=resnet18 dataset=...
  target.recording.trials=4 target.recording.noise=poisson ...``, run.py's overrides) as a
  simulated recording, every sampled unit kept (the reliability filter applies when the file is
  used as a target), its probe images beside it;
- ``info FILE``: what a recording holds, per region (neuroids, reliability).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..errors import IdsimError, cli

log = logging.getLogger("idsim")


def _stimuli_dir(out: Path, given: str | None) -> Path:
    return Path(given) if given else out.with_name(f"{out.stem}_stimuli")


def _relative(folder: Path, out: Path) -> str:
    try:
        return str(folder.resolve().relative_to(out.resolve().parent))
    except ValueError:
        return str(folder.resolve())


def convert_allen(files: list[str], out: Path, window: list[float] | None, stimuli: str | None) -> Path:
    from . import allen, assembly

    rec = allen.read(files, window)
    folder = _stimuli_dir(out, stimuli)
    assembly.write_images(allen.stimuli(files, rec), folder)
    attrs = {**rec.attrs, "stimuli": _relative(folder, out)}
    path = assembly.write(out, rec.responses, rec.stimulus_ids, rec.neuroid_ids, rec.regions,
                          {k: v for k, v in rec.neuroid_coords.items() if k != "region"}, attrs)
    print(f"wrote {path}: {rec.n_repetitions} repetitions x {rec.n_stimuli} scenes x {len(rec.neuroid_ids)} neuroids"
          f" in {', '.join(rec.region_names())}; stimuli in {folder}")
    return path


def simulate(overrides: list[str], out: Path, stimuli: str | None) -> Path:
    from .. import config, schema, systems
    from ..cache import cached_features
    from ..systems.recording import SimulatedRecordingSystem, SimulatedTrials
    from . import assembly

    run = schema.load(config.compose(overrides))
    target = systems.build(run.target, run.target.name, systems.TARGET, run)
    if not isinstance(target, SimulatedRecordingSystem):
        raise IdsimError("simulate needs a network target seen through a recording: set target.recording.trials,"
                         " .neurons or .noise (e.g. target=resnet18 target.recording.trials=4"
                         " target.recording.noise=poisson)")
    target.prepare()
    probe = run.dataset.build()
    cache = run.cache.dir if run.cache.enabled else None
    values, _ = cached_features(target.network, probe, target.values_plan(), run.extraction, cache)
    trials = SimulatedTrials(values, target.sim, target.seed)
    parts, ids, regions, units, layer_index = [], [], [], [], []
    for k, layer in enumerate(trials.regions()):
        x = trials.trials(layer)
        parts.append(x)
        idx = trials.unit_index(layer)
        ids += [f"{layer}/{u}" for u in idx]
        regions += [layer] * x.shape[2]
        units.append(idx)
        layer_index += [k] * x.shape[2]
    folder = _stimuli_dir(out, stimuli)
    assembly.write_images(probe, folder)
    s = target.sim
    attrs = {"source": f"simulated recording of {target.network.describe()}", "architecture": target.architecture,
             "network": target.network.name, "neurons": "all" if s.neurons is None else s.neurons, "trials": s.trials,
             "noise": s.noise, "rate": s.rate, "snr": s.snr, "seed": target.seed, "dataset": probe.name,
             "stimuli": _relative(folder, out)}
    path = assembly.write(out, np.concatenate(parts, axis=2), [probe.stimulus_id(i) for i in range(len(probe))], ids,
                          regions, {"unit_index": np.concatenate(units), "layer_index": np.asarray(layer_index)}, attrs)
    if s.min_reliability is not None:
        print(f"note: every unit is written; the filter applies when the file is used"
              f" (target=recording target.min_reliability={s.min_reliability})")
    print(f"wrote {path}: {s.trials} trials x {len(probe)} stimuli x {len(ids)} units in {len(parts)} layers;"
          f" stimuli in {folder}")
    return path


def info(path: str, splits: int, seed: int) -> None:
    from . import assembly
    from .reliability import split_half_reliability

    rec = assembly.load(path)
    trials = rec.n_repetitions if rec.has_trials else "none (trial-averaged)"
    print(f"{path}: {rec.n_stimuli} stimuli, {len(rec.neuroid_ids)} neuroids, repetitions: {trials};"
          f" stimuli: {rec.stimuli_path() or 'not named'}")
    for region in rec.region_names():
        idx = rec.region_index(region)
        line = f"  {region}: {idx.size} neuroids"
        if rec.has_trials and rec.n_repetitions >= 2:
            r = split_half_reliability(rec.responses[:, :, idx], splits, seed)
            line += (f", split-half reliability median {np.nanmedian(r):.3f}, >= 0.8: {int(np.sum(r >= 0.8))}"
                     if np.isfinite(r).any() else ", reliability undefined")
        print(line)


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m idsim.recordings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("convert-allen", help="Allen Brain Observatory 2P NWB files to one recording file")
    a.add_argument("files", nargs="+", help="three_session_B ophys NWB files")
    a.add_argument("--out", required=True, type=Path, help="the netCDF file to write")
    a.add_argument("--window", nargs=2, type=float, metavar=("START", "END"), default=None,
                   help="response window in seconds after onset (default: each presentation's own frames)")
    a.add_argument("--stimuli", default=None, help="where to write the scenes (default: <out>_stimuli/)")
    s = sub.add_parser("simulate", help="a network target as a simulated recording file")
    s.add_argument("overrides", nargs="*", help="run.py overrides: target=resnet18 target.recording.trials=4 ...")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--stimuli", default=None, help="where to write the probe images (default: <out>_stimuli/)")
    i = sub.add_parser("info", help="what a recording file holds, per region")
    i.add_argument("file")
    i.add_argument("--splits", type=int, default=10)
    i.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "convert-allen":
        if args.window is not None and not args.window[0] < args.window[1]:
            raise IdsimError(f"--window {args.window[0]} {args.window[1]}: start must be before end")
        convert_allen(args.files, args.out, args.window, args.stimuli)
    elif args.cmd == "simulate":
        simulate(args.overrides, args.out, args.stimuli)
    else:
        info(args.file, args.splits, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
