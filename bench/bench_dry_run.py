"""Wall time of the search's fast paths: ``--dry-run`` and the missing-data error (issue [scale]).

    python bench/bench_dry_run.py --runs 5
    python bench/bench_dry_run.py --runs 5 --before /tmp/old   # an older tree, alternated

Each command runs in a fresh process with ``PYTHONPATH`` set to the checkout (this one, and
``--before``'s, e.g. ``git archive COMMIT | tar -x -C /tmp/old``), the checkouts alternated run
by run so both see the same load; ``python -c "import torch"`` is timed beside them as the floor
of any command that imports torch. Prints each command's runs and median in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "dry-run": ["-m", "tune_m3.search", "--space", "m3_grid_mosei", "--dry-run"],
    "missing-data": [
        "-m",
        "tune_m3.search",
        "--space",
        "m3_grid_mosei",
        "--dataset",
        "nonexistent",
    ],
    "import torch": ["-c", "import torch"],
}


def wall(tree: Path, argv: list[str]) -> float:
    """Seconds for ``python argv`` run in ``tree`` with it first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--before", type=Path, help="an older checkout, timed alternately")
    args = p.parse_args()
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for cmd, argv in COMMANDS.items():
            for side, tree in trees.items():
                if cmd == "import torch" and side == "before":
                    continue
                times.setdefault((cmd, side), []).append(wall(tree, argv))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each, seconds")
    for (cmd, side), ts in times.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        label = cmd if cmd == "import torch" else f"{cmd} ({side})"
        print(f"{label}: median {statistics.median(ts):.2f} ({runs})")


if __name__ == "__main__":
    main()
