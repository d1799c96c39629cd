"""The command-line application behind ``run.py`` (Hydra)."""
from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from .config import check_overrides, register_models
from .errors import IdsimError

log = logging.getLogger("idsim")

register_models()


def is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def task(cfg: DictConfig):
    """Run one experiment; a user error becomes one line on stderr and exit status 2 (single runs)."""
    from .experiment import run_experiment

    try:
        result = run_experiment(cfg)
    except IdsimError as e:
        log.error("%s", e)
        if is_multirun():
            raise
        print(f"idsim: error: {e}", file=sys.stderr)
        sys.exit(2)
    return float(result.identifiability["identifiability_index"].mean())


def launch(main, argv: list[str] | None = None) -> None:
    """Check the command line for unknown config options, then hand over to Hydra."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_overrides(argv)
    except IdsimError as e:
        print(f"idsim: error: {e}", file=sys.stderr)
        sys.exit(2)
    main()
