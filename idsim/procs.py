"""Processes and their leftovers: is a recorded process still alive, per-process scratch folders.

* **Liveness.** A process is named by its host, PID and start time (``/proc/<pid>/stat``, so a
  reused PID is not mistaken for the original); a SLURM job by its id, asked of ``squeue``.
  :func:`process_alive` and :func:`slurm_state` answer None when they cannot tell (another host,
  no ``squeue``).
* **Scratch folders.** Spilled layer values (``extraction.ram_budget_mb``) live in
  ``<scratch_dir or the system temp>/idsim-scratch-<host>-<pid>-<start>/``, one folder per process
  (:func:`run_folder`). Extraction removes its files when it ends, also when a SIGTERM/SIGINT
  stops it; the folder itself goes at exit. A process killed with SIGKILL cannot clean up: the
  next run on the same host removes the folders of processes that are gone (:func:`sweep_dead`).
  Every scratch file that is written through a memory mapping has its disk blocks allocated first
  (:func:`reserve`): a full disk is then one error line, never a SIGBUS.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import IdsimError

log = logging.getLogger("idsim")

SCRATCH_PREFIX = "idsim-scratch-"


def hostname() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (None if unknown or gone)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat; fields[0] is field 3


def process_alive(host: str | None, pid: int | None, start: str | None = None) -> bool | None:
    """Whether the process ``pid`` started at ``start`` on ``host`` still runs (None: not this host, can't tell)."""
    if not host or pid is None or host != hostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except (OSError, ValueError):
        return None
    if start is not None:
        now = process_start(int(pid))
        if now is not None and now != str(start):
            return False  # the PID was reused by another process
    return True


#: squeue states of a job that has not ended
SLURM_ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


def slurm_state(job_id: str | None, timeout: float = 10) -> str | None:
    """A SLURM job's state from ``squeue`` (``ENDED`` once squeue has forgotten it; None: cannot ask)."""
    if not job_id:
        return None
    try:
        res = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout.strip().split()
    if res.returncode == 0 and out:
        return out[0]
    if res.returncode == 0 or "invalid job id" in res.stderr.lower():
        return "ENDED"
    return None


# --------------------------------------------------------------------------- scratch folders


def _scratch_name(host: str, pid: int, start: str | None) -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", host)
    return f"{SCRATCH_PREFIX}{host}-{pid}-{start or 0}"


_folders: dict[str, Path] = {}


def run_folder(base: str | Path | None = None) -> Path:
    """This process's scratch folder under ``base`` (default: the system temp folder), made on first use.

    The first call for a base also removes the folders of dead processes of this host there.
    """
    root = Path(base).expanduser() if base else Path(tempfile.gettempdir())
    key = str(root.resolve())
    folder = _folders.get(key)
    if folder is not None and folder.is_dir():
        return folder
    sweep_dead(root)
    folder = root / _scratch_name(hostname(), os.getpid(), process_start(os.getpid()))
    folder.mkdir(parents=True, exist_ok=True)
    if not _folders:
        atexit.register(_remove_own)
    _folders[key] = folder
    return folder


def reserve(path: str | Path, offset: int, nbytes: int, what: str) -> None:
    """Allocate the disk blocks of bytes ``[offset, offset + nbytes)`` of the file ``path`` now (growing it if needed).

    Scratch files are written through memory mappings. A page of a sparse file written when the disk is
    full cannot be stored, and the kernel kills the process with SIGBUS: no message, no status, no
    cleanup. With the blocks allocated here, a full disk is an :class:`~idsim.errors.IdsimError` instead,
    before ``what`` is written. Filesystems without ``fallocate`` are mostly served by the C library (it
    writes the blocks); where allocation is refused as unsupported, the file is only grown (sparse, as
    before this check existed), so such a scratch folder still works.
    """
    if nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # offset >= 0 and nbytes > 0: unsupported
            if os.fstat(fd).st_size < offset + nbytes:
                os.ftruncate(fd, offset + nbytes)
            return
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        folder = Path(path).parent
        free = shutil.disk_usage(folder).free
        raise IdsimError(f"no room on disk for {what} ({nbytes / 2**20:,.0f} MB) in {folder}: {free / 2**20:,.0f} MB"
                         f" free; free space there, set extraction.scratch_dir to a folder on a disk with room, or"
                         f" keep more in RAM (extraction.ram_budget_mb)") from None
    finally:
        os.close(fd)


def _remove_own() -> None:
    for folder in _folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    _folders.clear()


def sweep_dead(base: str | Path) -> list[Path]:
    """Remove the scratch folders under ``base`` left by processes of this host that are gone."""
    root = Path(base)
    host = re.sub(r"[^A-Za-z0-9.]", "_", hostname())
    removed = []
    try:
        candidates = list(root.glob(f"{SCRATCH_PREFIX}{host}-*"))
    except OSError:
        return removed
    for p in candidates:
        m = re.fullmatch(re.escape(f"{SCRATCH_PREFIX}{host}-") + r"(\d+)-(\d+)", p.name)
        if m is None or not p.is_dir():
            continue
        pid, start = int(m.group(1)), m.group(2)
        if pid == os.getpid():
            continue
        if process_alive(hostname(), pid, None if start == "0" else start) is False:
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed the scratch folder of a dead run: %s (%.1f MB)", p, size / 2**20)
            removed.append(p)
    return removed


def tune_memory() -> bool:
    """Memory settings of a run (True when they were applied); called by the command line and by each job.

    - The cycle collector skips the objects of start-up from now on (:func:`settle`).
    - glibc's malloc keeps and reuses freed memory: a run allocates the same large arrays again and
      again (each batch's activations, each layer's store and Gram chunks), and memory fresh from the
      kernel costs a page fault per 4 KiB when first written (here about 2 s per GB, a fifth of some
      models' forward passes). Large blocks then come from the heap instead of fresh mappings, and
      freed memory stays with the process until the run ends; the heap fragments, so the peak RSS
      grows (default CKA job at 150 images: 5.0 GB instead of 4.0 GB, for about 10% less time).
    - NumPy does not ask for transparent huge pages on its large arrays: on kernels that compact
      memory for such requests (``defrag=madvise``, as here), first writes to a fresh 1 GB array
      took 4.4x longer with them (``benchmarks/pages_bench.py``).

    ``IDSIM_MALLOC=system`` leaves both as they are.
    """
    settle()
    if os.environ.get("IDSIM_MALLOC", "reuse") == "system":
        return False
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # read when NumPy is imported (here and in child processes)
    if "numpy" in sys.modules:  # already imported: tell it directly
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:  # NumPy 1.x
            from numpy.core.multiarray import _set_madvise_hugepage
        _set_madvise_hugepage(False)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False


# --------------------------------------------------------------------------- the cycle collector


def settle() -> None:
    """Collect what is garbage now, then exempt every object still alive from later full collections.

    A run holds about 600,000 Python objects that live to its end (libraries' modules, configs),
    and each full collection walked all of them: 0.1-0.8 s each, 1.4 s of the default CKA job (now
    0.4 s), nearly all during libraries' imports and at exit. Frozen objects are still freed by reference counting;
    collecting first means no garbage cycle (say, a model of the run that is done with) is frozen.
    """
    import gc

    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def importing():
    """Around a large library's first import: no cycle collection during it, its objects frozen after.

    An import makes objects that live as long as the process and almost no garbage; collections
    during it (several for torchvision, which imports torch._dynamo) would only walk them.
    """
    import gc

    settle()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()
