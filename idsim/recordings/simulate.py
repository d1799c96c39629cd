"""Recording-like model targets: a network's layers as a simulated recording.

A layer becomes a region of ``neurons`` units sampled without replacement (seeded; units that are
constant over the probe images are never sampled: they could carry no signal), each recorded on
``trials`` repetitions of every stimulus with noise:

- ``none``: every trial is the unit's activation (the ideal recording, repeated);
- ``poisson``: spike counts. Activations are rectified (``max(a, 0)``) and scaled per neuron so
  that its mean over stimuli is ``rate``; each trial's count is Poisson with that mean
  (``lambda = rate * max(a, 0) / mean_stimuli(max(a, 0))``). A neuron that is never positive
  never fires;
- ``gaussian``: each trial adds independent Gaussian noise whose variance is the neuron's
  variance over stimuli divided by ``snr`` (single-trial signal-to-noise ratio; ``snr=1``: as
  much noise as signal on one trial).

Trials are drawn from a generator seeded by ``seed`` and the layer's name, so a simulated
recording is reproducible and independent of the other layers.
"""
from __future__ import annotations

import numpy as np

from ..errors import IdsimError
from ..reduce import layer_rng

NOISES = ("none", "poisson", "gaussian")


def simulate_trials(values: np.ndarray, trials: int, noise: str = "none", rate: float = 5.0, snr: float = 1.0,
                    seed: int = 0, layer: str = "layer") -> np.ndarray:
    """``trials`` noisy repetitions (repetition × presentation × neuron, float32) of ``values`` (presentation × neuron)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise IdsimError(f"values must be presentation × neuron (2-D), got shape {x.shape}")
    if trials < 1:
        raise IdsimError(f"trials must be >= 1, got {trials}")
    shape = (trials, *x.shape)
    if noise == "none":
        return np.broadcast_to(x.astype(np.float32), shape).copy()
    rng = layer_rng(seed, layer, "simulated-trials")
    if noise == "poisson":
        pos = np.clip(x, 0.0, None)
        mean = pos.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = np.where(mean > 0, rate * pos / np.where(mean > 0, mean, 1.0), 0.0)
        return rng.poisson(lam, size=shape).astype(np.float32)
    if noise == "gaussian":
        sd = x.std(0) / np.sqrt(snr)
        return (x + rng.standard_normal(shape) * sd).astype(np.float32)
    raise IdsimError(f"noise={noise!r}; valid: {', '.join(NOISES)}")


__all__ = ["simulate_trials", "NOISES"]
