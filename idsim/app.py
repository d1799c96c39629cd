"""The command-line application behind ``run.py`` (Hydra).

:func:`task` runs one job under its folder's lock and keeps its ``status.json`` (see
:mod:`idsim.jobs`); in a sweep it skips a job that already finished with the same inputs, or
that runs elsewhere, and a failed job re-raises as one line. A user error is one console line
naming the log that holds its traceback; a signal (SIGTERM, SIGINT, SLURM's pre-timeout signal)
is recorded as ``failed`` (``killed``/``timeout``). :func:`launch` checks the command line, runs
Hydra, and when a sweep had failed jobs still writes the sweep summary and names the failures
before exiting with status 1; a launcher that gave up (SLURM jobs that can never start) is one line
and status 1.

Submitit pickles the task function (with this module's globals by reference) to run it on
another machine: nothing here may hold locks, open files or CUDA handles at module level.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

from omegaconf import DictConfig

from . import jobs, schema
from .config import check_overrides
from .errors import IdsimError, LaunchAborted, report

log = logging.getLogger("idsim")

schema.register()


def task(cfg: DictConfig) -> float:
    """Run one experiment and return its mean identifiability index.

    The job holds its folder's lock while it runs: when another live process holds it, a sweep
    job is skipped ("running elsewhere") and a single run stops with one line. In a sweep, a job
    already done with the same inputs is skipped. A user error in a single run becomes one line
    on stderr naming the log that holds the traceback, and exit status 2. In a sweep, the job's
    failure is recorded (``status.json``, traceback in the job's log) and re-raised so that Hydra
    and the launcher see the job as failed. SIGTERM/SIGINT (and SLURM's pre-timeout signal) mark
    the job ``failed`` (``killed``/``timeout``) and stop it; a single run exits with 128 + the signal.
    """
    from .experiment import run_experiment
    from .procs import tune_memory

    tune_memory()  # a SLURM or local sweep job does not pass through launch()
    job = jobs.Job.current(cfg)
    with job.locked() as held:
        if not held:
            if job.multirun:
                log.warning("skipped: running elsewhere (%s holds %s)", job.holder, job.out_dir)
                return float("nan")
            report(f"the run folder {job.out_dir} is in use by a run that is still going ({job.holder}); wait for it"
                   f" to end or choose another hydra.run.dir")
            sys.exit(2)
        inputs = None
        if job.multirun:
            inputs = jobs.run_inputs(cfg)
            stored, why = job.stored_result(inputs)
            if stored is not None:
                log.info("skipped: already done (%s, same config %s and inputs)", job.out_dir, job.config_hash[:12])
                return stored
            if why:
                log.info("running again: %s", why)
        with jobs.stop_on_signals():
            try:
                job.start(inputs)
                result = run_experiment(cfg)
                fields = jobs.result_fields(result)
                job.done(fields)
            except BaseException as e:  # KeyboardInterrupt and SystemExit too: the status file must not say "running"
                job.failed(e)
                _after_failure(job, e)
    mean = fields["mean_identifiability_index"]
    return float("nan") if mean is None else mean


def _after_failure(job: jobs.Job, e: BaseException) -> None:
    """What a failed job does once its failure is recorded: re-raise for the launcher, or exit with one line."""
    log_hint = f" (full log: {job.log_file})" if job.log_file is not None and job.log_file.is_file() else ""
    if isinstance(e, (jobs.Killed, KeyboardInterrupt)):
        signum = e.signum if isinstance(e, jobs.Killed) else int(signal.SIGINT)
        if job.multirun:
            if os.environ.get("SUBMITIT_EXECUTOR"):  # a submitit job: the launcher reads the failure from its result
                raise job.failure() from e
            raise e  # the sweep's own process: stop the sweep (launch() writes the summary)
        where = f"; partial results kept in {job.out_dir}" if job.out_dir is not None else ""
        report(f"{e}: the run is recorded as failed ({job.status.get('reason')}){where}{log_hint}")
        sys.exit(128 + signum)
    if job.multirun:
        jobs.log_to_console(f"job {job.label} failed: {job.status.get('error')} ({job.where()})")
        raise job.failure() from e
    if isinstance(e, IdsimError):
        report(f"{e}{log_hint}")
        sys.exit(2)
    raise e


def launch(main, argv: list[str] | None = None) -> None:
    """Check the command line, then hand over to Hydra.

    Hydra ends a sweep with a failed job by printing that job's error and exiting with status 1,
    without calling ``on_multirun_end``: the summary of the other jobs is written here instead,
    followed by one line per failed job.
    """
    argv = sys.argv[1:] if argv is None else argv
    from .procs import tune_memory

    tune_memory()
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
    except LaunchAborted as e:  # the launcher gave up before any job ran (SLURM jobs that can never start)
        report(e)
        sys.exit(1)
    except jobs.Killed as e:  # a sweep's job in this process was stopped by a signal: so is the sweep
        from . import sweep

        if sweep.active_sweep() is not None:
            report(sweep.finish_failed_sweep())
        sys.exit(128 + e.signum)
    except (SystemExit, Exception) as e:
        from . import sweep

        code = e.code if isinstance(e, SystemExit) else 1
        if code in (0, None) or sweep.active_sweep() is None:
            raise
        report(sweep.finish_failed_sweep())
        sys.exit(1)
