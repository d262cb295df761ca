"""How a search ends when it does not finish: interrupted (SIGINT / SIGTERM) or failed.

Interrupted: running trials and the parent run are marked KILLED, the state file says
``interrupted``, the exact ``--resume`` command is printed, exit 130 / 143. Failed (any other
exception): no run of the search is left RUNNING (they become FAILED), the state file says
``failed``, and the exception goes on to the CLI. A new search that ends before its parent run
exists leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import sys
from pathlib import Path

from tune_m3 import names
from tune_m3.errors import UserError
from tune_m3.search.interrupts import exit_code
from tune_m3.search.leftovers import remove_scratch
from tune_m3.search.state import Search, Session


def resume_command(argv: list[str], name: str) -> str:
    """The user's own command line, pointed at this search, with --resume."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--name", "--resume"):
            skip = a == "--name"
            continue
        if a.startswith("--name="):
            continue
        out.append(a)
    return shlex.join(["python", "-m", "tune_m3.search", *out, "--name", name, "--resume"])


def shutdown_ray(search: Search) -> None:
    """Stop this driver's Ray (if it started) and remove the trials' scratch folders."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    if search.claim is not None and search.paths.storage is not None:
        remove_scratch(search.paths)


def end_interrupted(search: Search, signum: int) -> int:
    """Running trials and the parent run KILLED, no best.*, the resume command; 130 / 143."""
    shutdown_ray(search)
    s, name = search.session, search.paths.name
    if s is None and not search.resumed:
        _abandon(search)
        print(f"\nsearch '{name}' interrupted before it started; nothing was written")
        return exit_code(signum)
    if s is not None:
        _close_runs(s, names.KILLED, names.RUN_KILLED)
    search.set_status(names.SEARCH_INTERRUPTED)
    print(
        f"\nsearch '{name}' interrupted by {signal.Signals(signum).name}; nothing is lost. "
        f"Resume it with: {resume_command(search.options.argv, name)}",
        flush=True,
    )
    return exit_code(signum)


def end_disk_low(search: Search, reason: str) -> None:
    """The search stopped itself on a nearly full disk: trials stopped and saved (KILLED, as by
    Ctrl-C), the parent FAILED with the reason; a UserError (exit 2) with the resume command."""
    shutdown_ray(search)
    s = search.session
    if s is not None:
        s.logger.writes.set_tag(s.parent_id, names.TAG_ERROR, reason)
        _close_runs(s, names.KILLED, names.RUN_FAILED)
    search.set_status(names.SEARCH_FAILED)
    raise UserError(
        f"{reason}. The search stopped before it could lose anything (trials saved, runs closed); "
        f"free space, then resume it with: {resume_command(search.options.argv, search.paths.name)}"
    )


def disk_full_error(search: Search, err: OSError) -> UserError:
    """A disk error no watch foresaw, as one line: where, how much is free, how to go on."""
    from tune_m3.search.diskspace import free_bytes

    where = Path(err.filename) if getattr(err, "filename", None) else None
    places = [where] if where is not None else list(search.places().values())
    free = ", ".join(f"{p}: {free_bytes(p) / 1e6:.1f} MB free" for p in places)
    return UserError(
        f"the disk is full or read-only ({err.strerror or err}; {free}); the search's runs are "
        f"marked FAILED. Free space, then resume it with: "
        f"{resume_command(search.options.argv, search.paths.name)}"
    )


def end_failed(search: Search) -> None:
    """After an error: no run of this search is left RUNNING (they become FAILED)."""
    shutdown_ray(search)
    if search.session is None:
        _abandon(search)
        return
    try:
        _close_runs(search.session, names.FAILED, names.RUN_FAILED)
    finally:
        search.set_status(names.SEARCH_FAILED)


def _close_runs(s: Session, trial_status: str, run_status: str) -> None:
    """Every open trial run ends with ``trial_status``, the parent run with ``run_status``."""
    if s.logger is None:  # the parent exists, no trial was prepared yet
        s.mlc.set_terminated(s.parent_id, run_status)
        return
    for tid in _open_trials(s):
        s.logger.trial_end(tid, trial_status)
    s.logger.writes.set_terminated(s.parent_id, run_status)
    s.logger.finish()


def _open_trials(s: Session) -> list[str]:
    """Trials whose runs are still open: not ended in this session, nor in an earlier one."""
    return [t for t in s.logger.runs if t not in s.ended and t not in s.logger.closed]


def _abandon(search: Search) -> None:
    """A new search that ends before its parent run exists leaves no folder behind."""
    paths = search.paths
    if not search.resumed and paths.storage is not None:
        search.claim.release()
        shutil.rmtree(paths.exp_dir, ignore_errors=True)
        with contextlib.suppress(
            OSError
        ):  # the storage folder too, if this made it and it is empty
            paths.storage.rmdir()
