"""Recordings as targets: the netCDF format, Allen Brain Observatory conversion, reliability and ceilings.

- :mod:`.assembly`: the format (``responses``: presentation × neuroid, or repetition ×
  presentation × neuroid; ``stimulus_id``, ``neuroid_id``, ``region``), :func:`load`, :func:`write`;
- :mod:`.allen`: Visual Coding two-photon NWB files (h5py) to an assembly;
- :mod:`.reliability`: split-half reliability (Spearman-Brown), regression and RSA ceilings;
- :mod:`.simulate`: a network's layers as a noisy, subsampled recording;
- :mod:`.target`: what any recording does as a target (filter, average, reduce, ceilings).

Command line: ``python -m idsim.recordings convert-allen FILE... --out resp.nc`` and
``python -m idsim.recordings simulate target=resnet18 target.recording.trials=4 ... --out sim.nc``.
NumPy only at import.
"""
from __future__ import annotations

from .assembly import FORMAT, Recording, load, write
from .reliability import (rdm_split_half, regression_ceiling, rsa_ceiling, spearman_brown, split_half_reliability,
                          split_halves)
from .simulate import NOISES, simulate_trials

__all__ = ["Recording", "load", "write", "FORMAT", "split_half_reliability", "spearman_brown", "split_halves",
           "regression_ceiling", "rsa_ceiling", "rdm_split_half", "simulate_trials", "NOISES"]
