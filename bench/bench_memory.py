"""Node memory of a search with K concurrent trials on MOSEI-scale synthetic data.

    python bench/bench_memory.py [--concurrency 1,2,4] [--dataset synth_mosei]

For each K, runs ``python -m tune_m3.search --space demo`` against the full-size synthetic MOSEI
set (built first if missing: 22,856 clips, 1.87 GB of float32 features) with K trials at once,
short trainings (``max_train_samples=256``, 1 epoch, no diagnostics) so the run is dominated by
holding the data, and samples every second the proportional set size (PSS) summed over the
search's whole process tree: the driver, Ray's GCS/raylet/object store and every trial worker.
PSS charges each shared page (the object store's shared memory, mapped by every trial that reads
the dataset) once in total, split between the processes mapping it, so the sum is the memory the
search really holds, independent of whatever else runs on the machine. It also reports the peak
number of trial processes seen and the peak Shmem of the machine. If every trial held
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


def tree_pss(pid: int) -> tuple[float, int]:
    """(GB of PSS summed over pid and its descendants, number of trial workers among them)."""
    import psutil

    total, trials = 0, 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
            if "ImplicitFunc" in " ".join(p.cmdline()):
                trials += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 1e9, trials


def run(k: int, dataset: str, results: str) -> tuple[float, float, float, int]:
    peak = [0.0, 0.0, 0]
    stop = threading.Event()
    proc_box: list = []

    def sample():
        while not stop.is_set():
            if proc_box:
                pss, trials = tree_pss(proc_box[0].pid)
                peak[0] = max(peak[0], pss)
                peak[2] = max(peak[2], trials)
            peak[1] = max(peak[1], used()[1])
            time.sleep(1.0)

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
        "max_epochs=1",
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
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "TUNE_M3_RESULTS": results},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc_box.append(proc)
    t.start()
    stdout, stderr = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        print(stdout[-2000:], stderr[-2000:])
        raise SystemExit(f"search with K={k} failed")
    return peak[0], peak[1], time.time() - t0, peak[2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concurrency", default="1,2,4")
    p.add_argument("--dataset", default="synth_mosei")
    args = p.parse_args()
    from tune_m3.data import ensure_synthetic

    if args.dataset == "synth_mosei":
        ensure_synthetic("synth_mosei", "mosei", 1.0)
    from tune_m3.data import read_meta

    meta = read_meta(args.dataset)
    clips = sum(meta.sizes.values())
    gb = clips * meta.seq_len * sum(meta.dims.values()) * 4 / 1e9
    print(f"dataset {args.dataset}: {clips} clips, {gb:.2f} GB of float32 features")
    print(
        "| concurrent trials | trial workers seen | peak PSS of the search's processes (GB) | "
        "added per extra trial (GB) | peak machine Shmem (GB) | wall (s) |"
    )
    print("|---|---|---|---|---|---|")
    first = None
    with tempfile.TemporaryDirectory() as results:
        for k in (int(x) for x in args.concurrency.split(",")):
            pss, shm, wall, trials = run(k, args.dataset, results)
            first = first or (k, pss)
            per = (pss - first[1]) / (k - first[0]) if k != first[0] else float("nan")
            print(
                f"| {k} | {trials} | {pss:.2f} | {per:.2f} | {shm:.2f} | {wall:.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
