"""The command-line application behind ``run.py`` (Hydra).

:func:`task` runs one job and keeps its ``status.json`` (see :mod:`idsim.jobs`); in a sweep it
skips a job that already finished with the same config, and a failed job re-raises as one line.
:func:`launch` checks the command line, runs Hydra, and when a sweep had failed jobs still writes
the sweep summary and names the failures before exiting with status 1.

Submitit pickles the task function (with this module's globals by reference) to run it on
another machine: nothing here may hold locks, open files or CUDA handles at module level.
"""
from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from . import jobs, schema
from .config import check_overrides
from .errors import IdsimError, report

log = logging.getLogger("idsim")

schema.register()


def task(cfg: DictConfig) -> float:
    """Run one experiment and return its mean identifiability index.

    A user error in a single run becomes one line on stderr and exit status 2. In a sweep, the
    job's failure is recorded (``status.json``, traceback in the job's log) and re-raised so that
    Hydra and the launcher see the job as failed.
    """
    from .experiment import run_experiment

    job = jobs.Job.current(cfg)
    if job.multirun:
        stored = job.stored_result()
        if stored is not None:
            log.info("skipped: already done (%s, same config %s)", job.out_dir, job.config_hash[:12])
            return stored
    job.start()
    try:
        result = run_experiment(cfg)
    except BaseException as e:  # KeyboardInterrupt and SystemExit too: the status file must not say "running"
        job.failed(e)
        if job.multirun:
            raise job.failure() from e
        if isinstance(e, IdsimError):
            report(e)
            sys.exit(2)
        raise
    fields = jobs.result_fields(result)
    job.done(fields)
    mean = fields["mean_identifiability_index"]
    return float("nan") if mean is None else mean


def launch(main, argv: list[str] | None = None) -> None:
    """Check the command line, then hand over to Hydra.

    Hydra ends a sweep with a failed job by printing that job's error and exiting with status 1,
    without calling ``on_multirun_end``: the summary of the other jobs is written here instead,
    followed by one line per failed job.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_overrides(argv)
        if "--help" in argv or "-h" in argv:  # Hydra's own help lists every option of every group: slow and long
            from .config import help_text

            print(help_text(argv))
            sys.exit(0)
    except IdsimError as e:
        report(e)
        sys.exit(2)
    try:
        main()
    except (SystemExit, Exception) as e:
        from . import sweep

        code = e.code if isinstance(e, SystemExit) else 1
        if code in (0, None) or sweep.active_sweep() is None:
            raise
        report(sweep.finish_failed_sweep())
        sys.exit(1)
