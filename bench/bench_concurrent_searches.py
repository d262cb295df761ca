"""Several searches at once on one results folder: SQLite vs an MLflow server (SQLite, PostgreSQL).

    python bench/bench_concurrent_searches.py --trials 40 --ks 1,2,3 \\
        [--backends sqlite,server_sqlite,server_pg] [--stress-writers 1,4,8] [--idle-seconds 20]
        [--out FILE]

About 20 min on 2 cores with the defaults. PostgreSQL needs its server package
(``/usr/lib/postgresql/*/bin``) and ``psycopg2-binary`` in this Python (bench-only, not a
dependency of tune_m3); without them ``server_pg`` is skipped with the reason. Results in
``docs/performance.md`` ("Several searches at once").

Part 0 (``--idle-seconds``): the CPU an idle, warmed-up ``mlflow server`` burns, with MLflow 3's
job execution on (its default: huey job consumers beside the uvicorn workers) and off
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``).

Part 1, real searches. For each K in ``--ks`` and each tracking backend, K real
``python -m tune_m3.search --space FILE --name sK_i --tracking-uri URI`` run at once, all with one
shared ``$TUNE_M3_RESULTS`` folder (Ray storage, Optuna file) and one fresh tracking store:

- ``sqlite``: ``--tracking-uri sqlite:///RESULTS/mlflow.db``, the file a search opens by default
  in its results folder (``tune_m3/tracking/store.py``), each search writing to it directly;
- ``server_sqlite`` / ``server_pg``: an ``mlflow server`` on 127.0.0.1 over a SQLite file /
  a PostgreSQL database (``concurrent_stores.py`` starts and stops both, by pid).

Every search is the grid space of ``bench_trial_overhead.prepare``: ``--trials`` one-epoch trials
of a tiny model on the SYNTHETIC MOSI-shaped set, ``max_concurrent: 1`` and 1 CPU per trial, so K
searches run K trials at once (each search also starts its own local Ray). Each search's output
goes to a file (a pipe nobody reads fills and blocks the search). Reported per search: wall time,
exit code, trials finished (its child runs FINISHED in the store), and the count of "MLflow write
failed", "database is locked", "Traceback" and "OperationalError" lines in its output; per round:
the store's rows (SQL on the store's own tables), metric rows per second of the round's wall
time, the server's CPU seconds (and PostgreSQL's), the load average before and after, and the slowdown (mean search
wall at K / at K=1, same backend).

Part 2, the store alone (``--stress-writers``): N processes, each writing "a trial's worth" of
MLflow calls in a loop for ``--stress-seconds`` (create_run with 8 tags, 50 params, 2 tags, 17 +
100 metrics in 2 log_batch calls, a tag, set_terminated: about what a search writes per trial,
through the same ``tune_m3.tracking.client``; one such trial first, uncounted) against one fresh
store per backend (a new experiment per writer count; servers warmed up first). Reported:
trial-writes per second, their p50/p95 latency, and errors. A search writes synchronously from
its driver, so this latency is added to every trial, and the rate is the ceiling of trials per
second the store takes from all searches together.

The machine's cores are shared by the K searches, their K Ray instances and the server: on a
small machine, part 1's slowdown is mostly CPU contention; compare the backends at the same K.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trial_overhead import prepare  # noqa: E402
from concurrent_stores import KINDS, Store, open_store, start_pg  # noqa: E402

from tune_m3.names import TAG_SEARCH  # noqa: E402

PATTERNS = ("MLflow write failed", "database is locked", "Traceback", "OperationalError")

# finished child runs of each search (tune_m3 tags every trial's run with its search's name)
TRIALS_SQL = f"""
select t.value, count(*) from runs r
join tags t on t.run_uuid = r.run_uuid and t.key = '{TAG_SEARCH}'
where r.status = 'FINISHED' and exists (
  select 1 from tags p where p.run_uuid = r.run_uuid and p.key = 'mlflow.parentRunId')
group by t.value
"""

WRITER = r"""
import json, sys, time
from mlflow.entities import Metric, Param
from tune_m3.tracking import client
uri, exp_id, t_start, seconds, who = sys.argv[1:6]
t_start, seconds = float(t_start), float(seconds)
c = client(uri)
def trial(n):
    ts = int(time.time() * 1000)
    r = c.create_run(exp_id, tags={f"t{i}": "x" for i in range(8)}, run_name=f"{who}-{n}")
    rid = r.info.run_id
    c.log_batch(rid, params=[Param(f"p{i}", str(i)) for i in range(50)])
    c.set_tag(rid, "node", "n0")
    c.set_tag(rid, "device", "cpu")
    c.log_batch(rid, metrics=[Metric(f"e{i}", float(i), ts, 1) for i in range(17)])
    c.log_batch(rid, metrics=[Metric(f"f{i}", float(i), ts, 1) for i in range(100)])
    c.set_tag(rid, "status", "completed")
    c.set_terminated(rid, "FINISHED")
trial(-1)  # warm-up, not counted
late = max(0.0, time.time() - t_start)
while time.time() < t_start:
    time.sleep(0.01)
t_end, n, errors, first, locked, lat = t_start + seconds, 0, 0, "", 0, []
while time.time() < t_end:
    t = time.perf_counter()
    try:
        trial(n)
    except Exception as err:
        errors += 1
        locked += "database is locked" in str(err)
        first = first or f"{type(err).__name__}: {str(err)[:200]}"
        continue
    if time.time() <= t_end:
        n += 1
        lat.append(time.perf_counter() - t)
print(json.dumps({"n": n, "errors": errors, "locked": locked, "first_error": first,
                  "late_s": late, "lat": lat}))
"""


def machine() -> dict:
    """CPU model, AVX2 / AVX-512 (from /proc/cpuinfo), core count."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((x.split(":", 1)[1].strip() for x in lscpu.splitlines() if "Model name" in x), "")
    flags = next((x for x in Path("/proc/cpuinfo").read_text().splitlines() if "flags" in x), "")
    return {
        "cpu": model,
        "avx2": " avx2" in flags,
        "avx512f": " avx512f" in flags,
        "cores": os.cpu_count(),
    }


def grep_log(text: str) -> dict:
    counts = {p: text.count(p) for p in PATTERNS}
    first = next((x for x in text.splitlines() if any(p in x for p in PATTERNS)), "")
    return {"log_counts": counts, "log_first_match": first[:300]}


def launch_searches(k: int, space: Path, env: dict, uri: str, logs: Path) -> list[dict]:
    """K searches at once; each one's wall time, exit code and log findings."""
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(k):
        name, log = f"s{k}_{i}", logs / f"s{k}_{i}.log"
        cmd = [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--name", name]
        with open(log, "w") as out:
            p = subprocess.Popen(
                [*cmd, "--tracking-uri", uri], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        runs.append({"name": name, "log": log, "proc": p, "t0": time.perf_counter()})
    pending = list(runs)
    while pending:
        for r in list(pending):
            if r["proc"].poll() is not None:
                r["wall_s"] = time.perf_counter() - r["t0"]
                pending.remove(r)
        time.sleep(0.2)
    out = []
    for r in runs:
        row = {"name": r["name"], "wall_s": r["wall_s"], "rc": r["proc"].returncode}
        out.append(row | grep_log(r["log"].read_text(errors="replace")))
    return out


def store_counts(store: Store) -> dict:
    rows = {t: store.query(f"select count(*) from {t}")[0][0] for t in ("runs", "metrics")}
    rows |= {t: store.query(f"select count(*) from {t}")[0][0] for t in ("params", "tags")}
    return {"rows": rows, "trials_by_search": dict(store.query(TRIALS_SQL))}


def run_round(kind: str, k: int, space: Path, env: dict, work: Path, pg) -> dict:
    """K searches at once against a fresh store of ``kind``, one shared results folder."""
    folder = work / f"{kind}_k{k}"
    store = open_store(kind, folder, pg)
    e = {**env, "TUNE_M3_RESULTS": str(folder / "results")}
    row = {"backend": kind, "k": k, "load_before": os.getloadavg(), **store.extra}
    pg0 = pg.cpu_s() if kind == "server_pg" else None
    cpu0, t0 = store.server_cpu_s(), time.perf_counter()
    try:
        row["searches"] = launch_searches(k, space, e, store.uri, folder / "logs")
        row["round_s"] = time.perf_counter() - t0
        cpu1 = store.server_cpu_s()
        row["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        row["postgres_cpu_s"] = None if pg0 is None else pg.cpu_s() - pg0
        row["load_after"] = os.getloadavg()
        row |= store_counts(store)
    finally:
        store.close()
    for s in row["searches"]:
        s["trials_finished"] = row["trials_by_search"].get(s["name"], 0)
    row["metric_rows_per_s"] = row["rows"]["metrics"] / row["round_s"]
    row["mean_wall_s"] = statistics.mean(s["wall_s"] for s in row["searches"])
    return row


def stress(store: Store, writers: int, seconds: float, env: dict) -> dict:
    """``writers`` processes writing trial-sized batches for ``seconds`` into ``store`` (a new
    experiment each time)."""
    from tune_m3 import tracking

    name = f"stress_{writers}"
    exp_id = tracking.get_or_create_experiment(tracking.client(store.uri), name)
    t_start = time.time() + 12 + 2 * writers  # everyone imported MLflow by then (late_s: not)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store.uri, exp_id, str(t_start), str(seconds), str(i)],
            env=env,
            stdout=subprocess.PIPE,  # a few hundred bytes, read once it exits
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    row = {"backend": store.kind, "writers": writers, "seconds": seconds, **store.extra}
    row["load_before"] = os.getloadavg()
    outs = [p.communicate() for p in procs]
    row["load_after"] = os.getloadavg()
    res = []
    for (out, err), p in zip(outs, procs, strict=True):
        if p.returncode != 0 or not out.strip():
            res.append({"n": 0, "errors": 1, "locked": 0, "first_error": err[-300:], "lat": []})
        else:
            res.append(json.loads(out.strip().splitlines()[-1]))
    lat = sorted(x for r in res for x in r["lat"])
    row |= {
        "trial_writes": sum(r["n"] for r in res),
        "trial_writes_per_s": sum(r["n"] for r in res) / seconds,
        "lat_p50_s": lat[len(lat) // 2] if lat else None,
        "lat_p95_s": lat[int(len(lat) * 0.95)] if lat else None,
        "errors": sum(r["errors"] for r in res),
        "locked": sum(r["locked"] for r in res),
        "first_error": next((r["first_error"] for r in res if r["first_error"]), ""),
        "late_s_max": max(r.get("late_s", 0.0) for r in res),
    }
    return row


def idle(kind: str, jobs: bool, seconds: float, work: Path, pg) -> dict:
    """CPU an idle, warmed-up server of ``kind`` burns (its own processes, not PostgreSQL's)."""
    store = open_store(kind, work / f"idle_{kind}_{jobs}", pg, jobs)
    try:
        cpu0, load = store.server_cpu_s() or 0.0, os.getloadavg()
        time.sleep(seconds)
        cpu = (store.server_cpu_s() or 0.0) - cpu0
        row = {"backend": kind, "jobs": jobs, "seconds": seconds, "load_before": load}
        row |= {"processes": store.server_procs(), "cpu_per_s": cpu / seconds, **store.extra}
    finally:
        store.close()
    print(
        f"idle {kind:13s} job execution {'on ' if jobs else 'off'}: {row['processes']} processes,"
        f" {row['cpu_per_s']:.3f} CPU-s/s, load {load[0]:.1f}",
        flush=True,
    )
    return row


def print_round(r: dict, base: dict | None) -> None:
    walls = ", ".join(f"{s['wall_s']:.0f}" for s in r["searches"])
    slow = r["mean_wall_s"] / base["mean_wall_s"] if base else 1.0
    print(
        f"{r['backend']:13s} K={r['k']}: walls [{walls}] s, rc "
        f"{[s['rc'] for s in r['searches']]}, trials {[s['trials_finished'] for s in r['searches']]}"
        f", metric rows {r['rows']['metrics']} ({r['metric_rows_per_s']:.0f}/s), slowdown "
        f"{slow:.2f}, server CPU {r['server_cpu_s'] or 0:.0f} s, errors "
        f"{sum(sum(s['log_counts'].values()) for s in r['searches'])}, load "
        f"{r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}",
        flush=True,
    )


def print_stress(r: dict) -> None:
    p50 = f"{r['lat_p50_s']:.3f}" if r["lat_p50_s"] is not None else "-"
    p95 = f"{r['lat_p95_s']:.3f}" if r["lat_p95_s"] is not None else "-"
    print(
        f"stress {r['backend']:13s} writers={r['writers']}: {r['trial_writes_per_s']:.1f} "
        f"trial-writes/s, latency p50 {p50} s p95 {p95} s, errors {r['errors']} (locked "
        f"{r['locked']}) {r['first_error'][:120]}, load {r['load_before'][0]:.1f}",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40, help="one-epoch trials per search")
    p.add_argument(
        "--ks", default="1,2,3", help="searches at once, comma-separated ('' skips part 1)"
    )
    p.add_argument("--backends", default=",".join(KINDS), help=f"some of {', '.join(KINDS)}")
    p.add_argument("--scale", type=float, default=0.02, help="SYNTHETIC MOSI scale")
    p.add_argument("--stress-writers", default="1,4,8", help="part 2 writer counts ('' skips)")
    p.add_argument("--stress-seconds", type=float, default=10.0)
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="part 0: an idle server's CPU over this many seconds, MLflow job execution on and "
        "off (0 skips)",
    )
    p.add_argument("--out", help="write the raw rows as JSON here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    kinds = [k for k in args.backends.split(",") if k]
    if bad := set(kinds) - set(KINDS):
        sys.exit(f"error: unknown backend(s) {sorted(bad)}; one of {', '.join(KINDS)}")
    work = Path(tempfile.mkdtemp(prefix="bench_concurrent_"))
    env = {**os.environ, "TUNE_M3_DATA_DIR": str(work / "store")}
    space = prepare(work, env, args.scale, args.trials, 1)
    out: dict = {
        "machine": machine(),
        "trials": args.trials,
        "scale": args.scale,
        "work": str(work),
    }
    pg = None
    if "server_pg" in kinds:
        pg, why = start_pg()
        if pg is None:
            print(f"server_pg skipped: {why}", flush=True)
            kinds.remove("server_pg")
            out["server_pg_skipped"] = why
    out["idle"], out["rounds"], out["stress"] = [], [], []
    try:
        for kind in (k for k in kinds if k != "sqlite" and args.idle_seconds > 0):
            for jobs in (True, False):
                out["idle"].append(idle(kind, jobs, args.idle_seconds, work, pg))
        base: dict[str, dict] = {}
        for k in (int(x) for x in args.ks.split(",") if x):
            for kind in kinds:  # backends side by side at each K: the same background load
                r = run_round(kind, k, space, env, work, pg)
                base.setdefault(kind, r)
                r["slowdown_vs_k1"] = r["mean_wall_s"] / base[kind]["mean_wall_s"]
                print_round(r, base[kind])
                out["rounds"].append(r)
        for kind in kinds:  # one store per backend for all writer counts
            store = open_store(kind, work / f"stress_{kind}", pg)
            try:
                for n in (int(x) for x in args.stress_writers.split(",") if x):
                    out["stress"].append(stress(store, n, args.stress_seconds, env))
                    print_stress(out["stress"][-1])
            finally:
                store.close()
    finally:
        if pg is not None:
            pg.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
