"""Node memory of a search with K concurrent trials on MOSEI-scale synthetic data.

    python bench/bench_memory.py [--concurrency 1,2,4] [--dataset synth_mosei]

For each K, runs ``python -m tune_m3.search --space demo`` against the full-size synthetic MOSEI
set (built first if missing: 22,856 clips, 1.87 GB of float32 features) with K trials at once,
short trainings (``max_train_samples=256``, 2 epochs, no diagnostics) so the run is dominated by
holding the data, and samples the machine's memory every 0.25 s:

    used  = MemTotal - MemAvailable       (everything: driver, Ray, trials, object store)
    shmem = Shmem                         (Ray's object store lives in /dev/shm)

It prints the idle baseline, the peak of each and the peak minus baseline. If every trial held
its own copy of the dataset, each added trial would add ~1.9 GB; sharing it through the object
store, each added trial costs only its process, model, optimizer and activations.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time


def meminfo() -> dict[str, float]:
    out = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            k, v = line.split(":")
            out[k] = int(v.split()[0]) / 1e6  # GB
    return out


def used() -> tuple[float, float]:
    m = meminfo()
    return m["MemTotal"] - m["MemAvailable"], m["Shmem"]


def run(k: int, dataset: str, results: str) -> tuple[float, float, float]:
    peak = [0.0, 0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            u, s = used()
            peak[0], peak[1] = max(peak[0], u), max(peak[1], s)
            time.sleep(0.25)

    cpus = max(0.25, (os.cpu_count() or 1) / k)
    cmd = [
        sys.executable,
        "-m",
        "tune_m3.search",
        "--space",
        "demo",
        "--dataset",
        dataset,
        "--num-samples",
        str(k),
        "--max-concurrent",
        str(k),
        "--cpus-per-trial",
        f"{cpus:g}",
        "--set",
        "max_train_samples=256",
        "--set",
        "max_epochs=2",
        "--set",
        "diagnostics=false",
        "--set",
        "threads=1",
        "--experiment",
        f"bench_memory_{k}",
        "--name",
        f"bench-memory-{k}",
    ]
    t = threading.Thread(target=sample, daemon=True)
    t0 = time.time()
    t.start()
    out = subprocess.run(
        cmd, env={**os.environ, "TUNE_M3_RESULTS": results}, capture_output=True, text=True
    )
    stop.set()
    t.join()
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-2000:])
        raise SystemExit(f"search with K={k} failed")
    return peak[0], peak[1], time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concurrency", default="1,2,4")
    p.add_argument("--dataset", default="synth_mosei")
    args = p.parse_args()
    from tune_m3.data import ensure_synthetic

    if args.dataset == "synth_mosei":
        ensure_synthetic("synth_mosei", "mosei", 1.0)
    base_used, base_shm = used()
    print(f"idle: used {base_used:.2f} GB, shmem {base_shm:.2f} GB")
    print(
        "| concurrent trials | peak used (GB) | peak used - idle (GB) | peak shmem (GB) | wall (s) |"
    )
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as results:
        for k in (int(x) for x in args.concurrency.split(",")):
            u, s, wall = run(k, args.dataset, results)
            print(f"| {k} | {u:.2f} | {u - base_used:.2f} | {s:.2f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
