"""SLURM jobs that can never start: found while the launcher waits, cancelled, and explained in one line.

A request beyond what a partition's nodes have (``hydra.launcher.cpus_per_task=64`` on 2-CPU nodes)
is accepted by ``sbatch`` on many clusters and then stays pending forever, with a reason that
waiting cannot change (``PartitionConfig``, ``BadConstraints``...). :func:`watch` (called by idsim's
SLURM launcher, ``hydra_plugins/idsim_launcher``) reads each pending task's reason with ``squeue``;
on such a reason it cancels the array and raises :class:`~idsim.errors.LaunchAborted` with one
line naming what each job asked for and what the partition offers (``scontrol show partition``,
``sinfo``). Reasons that resolve by waiting (``Resources``, ``Priority``, a node that is down...)
are left alone. Imports nothing heavy: it runs in the launching process.
"""
from __future__ import annotations

import logging
import re
import subprocess
import time
from typing import Any, Callable, Mapping, Sequence

from .errors import LaunchAborted

log = logging.getLogger("idsim")

#: pending reasons that waiting cannot resolve: the request exceeds the partition, the account or the QOS
HOPELESS = {
    "PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "InvalidAccount", "InvalidQOS",
    "AccountNotAllowed", "QOSNotAllowed", "PartitionNotAvail", "DependencyNeverSatisfied", "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob", "QOSMaxMemoryPerJob", "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit",
    "QOSMinCpuNotSatisfied", "QOSMinGRES", "QOSMinMemory", "QOSMinNode", "MaxCpuPerAccount", "MaxMemoryPerLimit",
    "InactiveLimit", "JobHeldAdmin", "FrontEndDown",
}
#: what each reason means, for the message
MEANING = {
    "PartitionConfig": "the request exceeds what the partition's nodes have",
    "BadConstraints": "no node has the requested features, resources or memory",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "a longer time limit than the partition allows",
    "ReqNodeNotAvail": "a requested node does not exist",
}


def _run(cmd: Sequence[str], timeout: float = 15) -> str | None:
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def pending_tasks(array_id: str, run: Callable = _run) -> list[dict[str, str]] | None:
    """The array's tasks still pending: id, partition and reason (None: squeue cannot be asked)."""
    out = run(["squeue", "-h", "-r", "-j", str(array_id), "-o", "%i|%T|%P|%r|%R"])
    if out is None:
        return None
    tasks = []
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5 and parts[1] == "PENDING":
            tasks.append({"id": parts[0], "partition": parts[2], "reason": parts[3], "detail": parts[4]})
    return tasks


def _existing_nodes(run: Callable = _run) -> set[str] | None:
    out = run(["sinfo", "-h", "-N", "-o", "%N"])
    return None if out is None else {x.strip() for x in out.split() if x.strip()}


def _expand(nodelist: str, run: Callable = _run) -> list[str]:
    out = run(["scontrol", "show", "hostnames", nodelist])
    return out.split() if out else [nodelist]


def hopeless(task: Mapping[str, str], run: Callable = _run) -> bool:
    """Whether a pending task's reason can never resolve by waiting."""
    reason = task["reason"]
    if reason in HOPELESS:
        return True
    if reason.startswith("ReqNodeNotAvail"):  # only when a requested node does not exist at all
        m = re.search(r"UnavailableNodes:(\S+)", task.get("detail", ""))
        nodes = _existing_nodes(run)
        if m and nodes is not None:
            wanted = _expand(m.group(1).rstrip(")"), run)
            return bool(wanted) and not any(n in nodes for n in wanted)
    return False


def requested(params: Mapping[str, Any]) -> str:
    """What each job of the sweep asks for, from the launcher's settings."""
    parts = [f"cpus_per_task={params.get('cpus_per_task')}"]
    for key, unit in (("mem_gb", " GB"), ("gpus_per_node", ""), ("nodes", ""), ("timeout_min", " min")):
        if params.get(key) is not None:
            parts.append(f"{key}={params[key]}{unit}")
    for key in ("constraint", "partition", "qos", "account"):
        if params.get(key):
            parts.append(f"{key}={params[key]}")
    return ", ".join(parts)


def partition_limits(partition: str, run: Callable = _run) -> str:
    """What a partition offers: nodes, CPUs and memory per node, GPUs, features, limits (scontrol, sinfo)."""
    fields: dict[str, str] = {}
    out = run(["scontrol", "show", "partition", partition, "-o"])
    if out:
        fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    nodes = run(["sinfo", "-h", "-p", partition, "-o", "%D|%c|%m|%G|%f"]) or ""
    rows = [line.split("|") for line in nodes.splitlines() if line.count("|") == 4]
    words = []
    if rows:
        cpus = max(int(r[1].rstrip("+")) for r in rows if r[1].rstrip("+").isdigit()) if any(
            r[1].rstrip("+").isdigit() for r in rows) else None
        mem = max(int(r[2].rstrip("+")) for r in rows if r[2].rstrip("+").isdigit()) if any(
            r[2].rstrip("+").isdigit() for r in rows) else None
        n = sum(int(r[0]) for r in rows if r[0].isdigit())
        gres = sorted({r[3] for r in rows if r[3] not in ("(null)", "")})
        feats = sorted({r[4] for r in rows if r[4] not in ("(null)", "")})
        words.append(f"{n} node(s) with at most {cpus} CPUs and {mem} MB each")
        words.append(f"GPUs/GRES {', '.join(gres)}" if gres else "no GPUs")
        if feats:
            words.append(f"features {', '.join(feats)}")
    for key, label in (("MaxCPUsPerNode", "max CPUs per node"), ("MaxMemPerNode", "max memory per node"),
                       ("MaxNodes", "max nodes per job"), ("MaxTime", "time limit")):
        if fields.get(key) and fields[key] not in ("UNLIMITED", "NONE"):
            words.append(f"{label} {fields[key]}")
        elif key == "MaxTime" and fields.get(key):
            words.append("no time limit")
    return f"partition {partition}: " + ("; ".join(words) if words else "limits unknown (sinfo/scontrol gave nothing)")


def cancel(array_id: str, run: Callable = _run) -> None:
    run(["scancel", str(array_id)])


def watch(array_id: str, params: Mapping[str, Any], *, poll: float = 2.0, run: Callable = _run,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until no task of the array is pending; cancel it and raise on a reason waiting cannot change.

    Returns at once when ``squeue`` cannot be asked (submitit then waits as usual). Interrupting the
    wait (Ctrl-C) cancels the array too.
    """
    try:
        while True:
            tasks = pending_tasks(array_id, run)
            if tasks is None:
                log.warning("squeue cannot be asked about job array %s: a job that can never start is not detected",
                            array_id)
                return
            if not tasks:
                return
            stuck = [t for t in tasks if hopeless(t, run)]
            if stuck:
                t = stuck[0]
                cancel(array_id, run)
                reason = t["reason"].split(",")[0]
                meaning = MEANING.get(reason, "waiting cannot change it")
                raise LaunchAborted(
                    f"SLURM cannot start the jobs of this sweep: job array {array_id} is pending with reason {reason}"
                    f" ({meaning}); cancelled it (scancel {array_id}). Each job asked for {requested(params)};"
                    f" {partition_limits(t['partition'], run)}. Ask for less (hydra.launcher.cpus_per_task,"
                    f" mem_gb, gpus_per_node, timeout_min) or choose another hydra.launcher.partition")
            sleep(poll)
    except (KeyboardInterrupt, SystemExit):
        cancel(array_id, run)
        log.warning("cancelled job array %s", array_id)
        raise
