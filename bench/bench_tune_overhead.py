"""Tune overhead: the same epochs in plain ``train()`` and inside a Ray Tune trial; time to first step.

    TUNE_M3_DATA_DIR=... python bench/bench_tune_overhead.py --scale 0.05 --epochs 6 --repeats 3

Both sides train the same configuration (baseline, seed 0, 1 thread, diagnostics off) on the
SYNTHETIC MOSEI-shaped set at ``--scale``, alternating plain and Ray runs ``--repeats`` times:

- plain: ``tune_m3.training.train`` in a fresh Python process, no checkpoints (what
  ``python -m tune_m3.train`` does); an epoch is the wall time between two epoch callbacks.
- Ray: ``python -m tune_m3.search`` with a one-trial grid space (1 CPU per trial, a local Ray,
  MLflow in SQLite); an epoch is Ray's ``time_this_iter_s`` between two reports, so it includes
  the trial's checkpoint, its report and Ray's bookkeeping.

Epochs 2 .. E-1 are compared (epoch 1 warms up, the last one also runs the test pass). Time to
first step: from launching the search command to the first training step of its trial (the
first epoch's MLflow timestamp minus that epoch's ``epoch_seconds``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PLAIN = """
import json, sys, time
from tune_m3.config import TrialConfig
from tune_m3.data import load_dataset
from tune_m3.training import train
cfg = TrialConfig(**json.loads(sys.argv[1]))
ds = load_dataset(cfg.dataset)
data = {s: sp.arrays() for s, sp in ds.splits.items()}
marks = []
t0 = time.perf_counter()
res = train(cfg, data, on_epoch=lambda m, ck: marks.append((time.perf_counter(), m)))
times = [b[0] - a[0] for a, b in zip([(t0, None)] + marks[:-1], marks)]
print(json.dumps({"epoch_wall": times, "epoch_seconds": [m["epoch_seconds"] for _, m in marks]}))
"""


def run_plain(cfg: dict, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ray(cfg: dict, env: dict, out: Path, name: str) -> dict:
    space = out / "one_trial.yaml"
    fixed = {k: v for k, v in cfg.items() if k not in ("dataset", "seed", "threads")}
    space.write_text(
        textwrap.dedent(
            f"""\
            description: one trial, for the Tune-overhead benchmark
            dataset: {{name: {cfg["dataset"]}}}
            fixed: {json.dumps(fixed)}
            search:
              p_mask: {{grid: [0.0]}}
            seeds: [{cfg["seed"]}]
            algorithm: {{type: grid}}
            scheduler: {{type: fifo}}
            metric: val_mae
            mode: min
            max_concurrent: 1
            resources: {{cpu: 1, gpu: 0}}
            """
        )
    )
    storage, uri = out / "ray", f"sqlite:///{out / 'mlflow.db'}"
    t_launch = time.time()
    subprocess.run(
        [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--name", name,
         "--storage", str(storage), "--mlflow-uri", uri, "--experiment", name],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    t_end = time.time()
    (result_file,) = (storage / name).glob("*/result.json")
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "epoch_seconds" in r]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    child = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    first = None
    if child:
        hist = client.get_metric_history(child[0].info.run_id, "epoch_seconds")
        h1 = min(hist, key=lambda m: m.step)
        first = h1.timestamp / 1000 - h1.value - t_launch
    return {
        "epoch_wall": [r["time_this_iter_s"] for r in rows],
        "epoch_seconds": [r["epoch_seconds"] for r in rows],
        "first_step_s": first,
        "command_s": t_end - t_launch,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench_out/tune_overhead")
    p.add_argument("--json", help="write all measurements here")
    args = p.parse_args()
    from tune_m3.data import ensure_synthetic

    name = f"synth_mosei_x{args.scale:g}"
    ensure_synthetic(name, like="mosei", scale=args.scale)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "dataset": name,
        "seed": 0,
        "threads": 1,
        "max_epochs": args.epochs,
        "diagnostics": False,
        "patience": args.epochs + 1,
    }
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    plain, ray = [], []
    for i in range(args.repeats):
        plain.append(run_plain(cfg, env))
        ray.append(run_ray(cfg, env, out, f"overhead-{int(time.time())}-{i}"))
        print(
            f"repeat {i + 1}: plain epochs {[round(t, 2) for t in plain[-1]['epoch_wall']]}  "
            f"ray epochs {[round(t, 2) for t in ray[-1]['epoch_wall']]}  "
            f"first step {ray[-1]['first_step_s']:.1f} s",
            flush=True,
        )

    def mid(runs, key):
        return [t for r in runs for t in r[key][1:-1]]

    pw, rw = statistics.median(mid(plain, "epoch_wall")), statistics.median(mid(ray, "epoch_wall"))
    pe, re_ = (
        statistics.median(mid(plain, "epoch_seconds")),
        statistics.median(mid(ray, "epoch_seconds")),
    )
    firsts = [r["first_step_s"] for r in ray if r["first_step_s"] is not None]
    print(f"\nSYNTHETIC {name}, 1 thread, epochs 2..{args.epochs - 1} of {args.repeats} runs each:")
    print("| | plain train() | Ray Tune trial | Ray / plain |")
    print("|---|---|---|---|")
    print(f"| epoch wall time, median (s) | {pw:.2f} | {rw:.2f} | {rw / pw:.3f} |")
    print(f"| inside train() (epoch_seconds), median (s) | {pe:.2f} | {re_:.2f} | {re_ / pe:.3f} |")
    print(
        f"| around the epoch (report, checkpoint), median (s) | {pw - pe:.2f} | {rw - re_:.2f} | |"
    )
    print(
        f"\ntime from `python -m tune_m3.search` to the trial's first step: median "
        f"{statistics.median(firsts):.1f} s ({', '.join(f'{f:.1f}' for f in firsts)})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"plain": plain, "ray": ray}, indent=1))


if __name__ == "__main__":
    main()
