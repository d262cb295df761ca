"""Hundreds of trials: where a search's own machinery (driver, MLflow, Optuna, report) slows.

    python bench/bench_many_trials.py --trials 500 --concurrent 2 [--out FILE]

One tune_m3 grid search of ``--trials`` one-epoch trials of a tiny model on the SYNTHETIC
MOSI-shaped set (scale 0.02), then the same count of plain Ray Tune busy-wait trials
(``reuse_actors=True``, the engine's floor; :mod:`bench_trial_overhead`), then
``python -m analysis.report`` on the search. Reported: both wall times and their ratio, the
driver's own CPU time (sampled until it exits), the MLflow store's size, rows and write rate,
``trials.parquet``'s size and columns, and the report's time.

``--profile FILE`` runs the search's driver under ``py-spy record`` (sampling, 50 Hz, its
threads' Python stacks; the trials' workers are other processes and not sampled): FILE gets the
collapsed stacks, ``FILE.top.txt`` the functions by the share of samples they appear in
(inclusive) and by where the samples stop (self), which is what says which work grows.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trial_overhead import prepare, run_plain, trial_split  # noqa: E402


def run_search_sampled(space: Path, env: dict, log: Path, profile: Path | None = None) -> dict:
    """The search's wall time and its driver's CPU seconds (user + system, sampled). Its output
    goes to ``log`` (a pipe nobody reads while it runs would fill and block the search)."""
    cmd = [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--name", "bench"]
    if profile is not None:  # py-spy starts the driver as its child and samples it
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [
            str(spy),
            "record",
            "--format",
            "raw",
            "--rate",
            "50",
            "-o",
            str(profile),
            "--",
            *cmd,
        ]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        me, cpu = psutil.Process(proc.pid), 0.0
        while proc.poll() is None:
            try:
                if profile is not None and me.pid == proc.pid:  # the driver is py-spy's child
                    kids = me.children()
                    me = kids[0] if kids else me
                t = me.cpu_times()
                cpu = t.user + t.system
            except psutil.Error:
                pass
            time.sleep(0.5)
    if proc.returncode != 0:
        sys.exit(f"search failed:\n{log.read_text()[-4000:]}")
    return {"search_s": time.perf_counter() - t0, "driver_cpu_s": cpu}


def summarise_profile(collapsed: Path, top: int = 40) -> str:
    """Functions by inclusive and self share of py-spy's samples (collapsed stacks: ``a;b;c N``)."""
    from collections import Counter

    inclusive, own, total = Counter(), Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames, count = stack.split(";"), int(n)
        total += count
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"\n## {title}")
        lines += [f"{100 * c / total:5.1f} %  {f}" for f, c in counter.most_common(top)]
    return "\n".join(lines) + "\n"


def store_facts(results: Path) -> dict:
    db = results / "mlflow.db"
    con = sqlite3.connect(db)
    rows = {
        t: con.execute(f"select count(*) from {t}").fetchone()[0]
        for t in ("runs", "metrics", "params", "tags")
    }
    con.close()
    table = results / "ray" / "bench" / "trials.parquet"
    import pandas as pd

    return {
        "mlflow_db_mb": db.stat().st_size / 1e6,
        **{f"mlflow_{k}": v for k, v in rows.items()},
        "trials_parquet_mb": table.stat().st_size / 1e6,
        "trials_parquet_columns": len(pd.read_parquet(table).columns),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--scale", type=float, default=0.02)
    p.add_argument("--out")
    p.add_argument("--profile", type=Path, help="py-spy the driver; collapsed stacks to this file")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_many_trials_"))
    env = {
        **os.environ,
        "TUNE_M3_DATA_DIR": str(work / "store"),
        "TUNE_M3_RESULTS": str(work / "results"),
    }
    space = prepare(work, env, args.scale, args.trials, args.concurrent)
    row = {"trials": args.trials, "concurrent": args.concurrent, "cpu": os.cpu_count()}
    row.update(run_search_sampled(space, env, work / "search.log", args.profile))
    if args.profile is not None:
        top = args.profile.with_name(args.profile.name + ".top.txt")
        top.write_text(summarise_profile(args.profile))
        print(f"profile: {args.profile}, summary: {top}")
    row.update(trial_split(work / "results"))
    row.update(store_facts(work / "results"))
    row["mlflow_metric_rows_per_s"] = row["mlflow_metrics"] / row["search_s"]
    row["plain_reuse_s"] = run_plain(
        args.trials, args.concurrent, row["epoch_seconds_median"], work, "many", True
    )
    row["ratio_reuse"] = row["search_s"] / row["plain_reuse_s"]
    t0 = time.perf_counter()
    rep = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.report",
            "--experiment",
            "bench_space",
            "--out",
            str(work / "report"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    row["report_s"] = time.perf_counter() - t0
    row["report_rc"] = rep.returncode
    row["load_avg_1m_end"] = os.getloadavg()[0]
    for k, v in row.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
