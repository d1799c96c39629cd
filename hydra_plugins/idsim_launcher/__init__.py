"""idsim's SLURM launcher (``hydra/launcher=slurm``): hydra-submitit-launcher's, plus a watch on pending jobs.

hydra-submitit-launcher submits the sweep as one job array and then waits for the results, with no
word while a job is pending, however long and for whatever reason. :class:`IdsimSlurmLauncher`
submits the same way, then reads the pending tasks' reasons (:func:`idsim.slurm.watch`) until all
have started: a reason that waiting cannot change (``PartitionConfig``, ``BadConstraints``...)
cancels the array and ends the command with one line naming what each job asked for and what the
partition offers, and exit status 1. Then it waits for the results as the base launcher does.

Hydra imports every module of ``hydra_plugins`` at start-up to find plugins: this one imports
nothing heavy at module level (submitit and idsim's helpers load inside :meth:`launch`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class IdsimSlurmLauncher(SlurmLauncher):
    """SLURM sweeps that fail fast when their jobs can never start."""

    def _executor(self):
        """submitit's executor, with this launcher's fields as its parameters (as the base launcher sets them)."""
        import submitit

        own = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                                         **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]}
                                         if "max_num_timeout" in self.params else {})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in own})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from idsim.slurm import watch

        assert self.config is not None and len(job_overrides) > 0
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        args: List[Any] = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*args))
        watch(str(jobs[0].job_id).split("_")[0], self.params)  # raises LaunchAborted on a job that can never start
        return [self._result(j, overrides) for j, overrides in zip(jobs, job_overrides)]

    @staticmethod
    def _result(job: Any, overrides: Sequence[str]) -> JobReturn:
        """The job's own result; a job that left none (cancelled, killed, out of time) becomes a failed one."""
        try:
            return job.results()[0]
        except Exception as e:  # submitit's UncompletedJobError, FailedJobError
            from hydra.types import JobStatus

            from idsim.jobs import JobFailed

            first = " ".join(str(e).split())[:300]
            ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
            ret.return_value = JobFailed(f"idsim: job {' '.join(overrides)} (SLURM job {job.job_id}) left no result:"
                                         f" {first} (submitit log {job.paths.stderr})")
            return ret
