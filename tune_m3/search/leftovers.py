"""What a killed search leaves behind, recorded while it runs and removed by the next search.

A driver killed with SIGKILL cannot clean up. Ray's node processes die with it, but two of
Ray's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are re-parented to init and
live on, and a trial worker's scratch folder (``tune_m3_trial_*``) stays where it was made.

So, for a local Ray, the driver records the processes it started (pid and start time, right
after ``ray.init``) in its state file, and trials make their scratch folders inside their own
Ray trial folder (under the search's folder, never the system temp directory). Before a search
starts (new or ``--resume``), :func:`reap` looks at every search of the same storage whose
driver is gone (its lock is free): it ends the recorded processes that still run, by pid, only
when the start time matches (a reused pid is left alone), and removes the scratch folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from tune_m3.search.paths import STATE_FILE, SearchPaths, is_running, read_state, write_state

SCRATCH_PREFIX = "tune_m3_trial_"
STATE_KEY = "ray_processes"  # [[pid, start time], ...] in the state file


def record_ray_processes(paths: SearchPaths) -> None:
    """Save the processes this driver started (Ray's node and its agents) in the state file."""
    import psutil

    if paths.storage is None:
        return
    me = psutil.Process(os.getpid())
    procs = [[p.pid, p.create_time()] for p in me.children(recursive=True)]
    write_state(paths, **{STATE_KEY: procs})


def reap(storage: Path | None) -> list[int]:
    """End what killed searches of ``storage`` left behind (see module doc); the pids ended."""
    if storage is None or not storage.is_dir():
        return []
    ended: list[int] = []
    for state_file in storage.glob(f"*/{STATE_FILE}"):
        paths = SearchPaths(state_file.parent.name, storage)
        if is_running(paths):
            continue
        ended += _end_recorded(paths)
        remove_scratch(paths)
    return ended


def remove_scratch(paths: SearchPaths) -> None:
    """Remove the trials' scratch folders of a search that runs no trial now. (A trial's own
    cleanup does not always run: Ray may end a finished trial's worker before it returns.)"""
    for pattern in (f"*/{SCRATCH_PREFIX}*", f"confirm/*/{SCRATCH_PREFIX}*"):  # trial dirs
        for scratch in paths.exp_dir.glob(pattern):
            shutil.rmtree(scratch, ignore_errors=True)


def _end_recorded(paths: SearchPaths) -> list[int]:
    import psutil

    recorded = read_state(paths).get(STATE_KEY) or []
    ended = []
    for pid, started in recorded:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 1e-3:  # the very process we started
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
    if recorded:
        write_state(paths, **{STATE_KEY: []})
    return ended


def scratch_dir() -> str | None:
    """Where a trial makes its scratch folder: its own Ray trial folder (None: the system's)."""
    with contextlib.suppress(Exception):
        from ray import tune

        trial_dir = tune.get_context().get_trial_dir()
        if trial_dir and Path(trial_dir).is_dir():
            return str(trial_dir)
    return None
