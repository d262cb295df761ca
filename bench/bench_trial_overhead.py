"""Per-trial overhead: a tune_m3 search of one-epoch trials against plain Ray Tune's floor.

    python bench/bench_trial_overhead.py --trials 40 --concurrent 2 --repeats 2 [--out FILE]

Both sides run ``--trials`` trials, ``--concurrent`` at a time, 1 CPU each, on this machine,
each side in a fresh process timed from launch to exit (Ray's start included), alternated
``--repeats`` times (order swapped every round):

- tune_m3: ``python -m tune_m3.search`` on a grid space of one-epoch trials (the baseline model,
  tiny, on the SYNTHETIC MOSI-shaped set at ``--scale``; FIFO; MLflow in SQLite; every trial's
  checkpoint, MLflow child run, final test pass and diagnostics included: what a search pays);
- plain Ray Tune: ``tune.Tuner`` over a function trainable that busy-waits the tune_m3 side's
  median ``epoch_seconds`` and reports once, twice: with Ray's defaults (a new worker process
  per trial) and with ``reuse_actors=True`` (the engine's floor; tune_m3 reuses actors too).

The ratio tune_m3 / plain is the overhead factor the issue's target (<= 1.3x) is about. It
also prints the tune_m3 side's per-trial split from its trials table and MLflow runs: the child
run's wall time vs its epoch's training time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLAIN = """
import os, sys, time
from ray import tune
import ray
n, conc, busy, storage = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
reuse = sys.argv[5] == "reuse"
ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
def trial(config):
    t = time.perf_counter()
    while time.perf_counter() - t < busy:
        pass
    tune.report({"val_mae": config["x"]})
tuner = tune.Tuner(
    tune.with_resources(trial, {"cpu": 1}),
    param_space={"x": tune.grid_search([i / n for i in range(n)])},
    tune_config=tune.TuneConfig(
        metric="val_mae", mode="min", max_concurrent_trials=conc, reuse_actors=reuse
    ),
    run_config=tune.RunConfig(storage_path=storage, name="plain", verbose=0),
)
res = tuner.fit()
assert len(res) == n and not res.errors, res.errors
"""


def space_yaml(dataset: str, n: int, concurrent: int) -> str:
    grid = [round(0.5 * i / n, 6) for i in range(n)]  # distinct p_mask values in [0, 0.5)
    return textwrap.dedent(
        f"""\
        description: bench_trial_overhead (SYNTHETIC)
        dataset: {{name: {dataset}}}
        fixed: {{max_epochs: 1, hidden: 16, proj: 16, threads: 1, scheme: m3, diag_fractions: [0.3]}}
        search: {{p_mask: {{grid: {grid}}}}}
        algorithm: {{type: grid}}
        scheduler: {{type: fifo}}
        max_concurrent: {concurrent}
        resources: {{cpu: 1}}
        """
    )


def prepare(work: Path, env: dict, scale: float, trials: int, concurrent: int) -> Path:
    """Build the SYNTHETIC MOSI-shaped set at ``scale`` in the env's store; the grid space file."""
    dataset = f"synth_mosi_x{scale:g}"
    subprocess.run(
        [sys.executable, "-m", "tune_m3.data", "synth", "--dataset", "mosi"]
        + ["--scale", str(scale), "--name", dataset],
        env=env,
        check=True,
        capture_output=True,
    )
    space = work / "bench_space.yaml"
    space.write_text(space_yaml(dataset, trials, concurrent))
    return space


def run_tune_m3(space: Path, env: dict, work: Path, tag: str) -> tuple[float, Path]:
    results = work / f"results_{tag}"
    e = {**env, "TUNE_M3_RESULTS": str(results)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--name", "bench"],
        env=e,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"tune_m3 search failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall, results


def run_plain(n: int, concurrent: int, busy: float, work: Path, tag: str, reuse: bool) -> float:
    """Plain Ray Tune's wall time for the same trials (``reuse``: ``reuse_actors=True``)."""
    t0 = time.perf_counter()
    mode = "reuse" if reuse else "fresh"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PLAIN,
            str(n),
            str(concurrent),
            str(busy),
            str(work / f"plain_{mode}_{tag}"),
            mode,
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"plain Ray Tune failed:\n{out.stderr[-3000:]}")
    return wall


def trial_split(results: Path) -> dict[str, float]:
    """Median epoch training time and median child-run wall time of the tune_m3 side (from
    its MLflow child runs)."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = c.get_experiment_by_name("bench_space")
    runs = [
        r
        for r in c.search_runs([exp.experiment_id], max_results=1000)
        if "mlflow.parentRunId" in r.data.tags and r.info.end_time
    ]
    return {
        "epoch_seconds_median": statistics.median(r.data.metrics["epoch_seconds"] for r in runs),
        "child_run_seconds_median": statistics.median(
            (r.info.end_time - r.info.start_time) / 1000 for r in runs
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--scale", type=float, default=0.02)
    p.add_argument("--out", help="write the raw rows as JSON here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_trial_overhead_"))
    store = work / "store"
    env = {**os.environ, "TUNE_M3_DATA_DIR": str(store)}
    space = prepare(work, env, args.scale, args.trials, args.concurrent)
    rows = []
    busy = None  # the tune_m3 side runs first in round 0: the plain sides need its epoch time
    for r in range(args.repeats):
        sides = ["tune_m3", "plain", "plain_reuse"]
        if r % 2 and busy is not None:  # swap the order every round
            sides.reverse()
        row: dict = {"round": r}
        for side in sides:
            if side == "tune_m3":
                row["tune_m3_s"], results = run_tune_m3(space, env, work, str(r))
                row.update(trial_split(results))
                busy = busy or row["epoch_seconds_median"]
            else:
                reuse = side == "plain_reuse"
                row[f"{side}_s"] = run_plain(
                    args.trials, args.concurrent, busy, work, str(r), reuse
                )
        row["ratio"] = row["tune_m3_s"] / row["plain_s"]
        row["ratio_reuse"] = row["tune_m3_s"] / row["plain_reuse_s"]
        rows.append(row)
        print(
            f"round {r}: tune_m3 {row['tune_m3_s']:.1f} s; plain Ray Tune {row['plain_s']:.1f} s "
            f"(Ray's default, a process per trial), {row['plain_reuse_s']:.1f} s (reuse_actors); "
            f"busy-wait {busy:.3f} s; ratios {row['ratio']:.2f} / {row['ratio_reuse']:.2f}; "
            f"tune_m3 per trial: epoch {row['epoch_seconds_median']:.3f} s, child run "
            f"{row['child_run_seconds_median']:.2f} s",
            flush=True,
        )
    for key, what in (("ratio", "Ray's default"), ("ratio_reuse", "reuse_actors=True")):
        ratios = [x[key] for x in rows]
        print(
            f"{args.trials} one-epoch trials, {args.concurrent} at a time: tune_m3 / plain Ray "
            f"Tune ({what}) = {statistics.median(ratios):.2f} (median of {len(ratios)}; "
            "SYNTHETIC data)"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
