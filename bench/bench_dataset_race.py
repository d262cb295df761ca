"""The dataset-input race: N processes log one new dataset to their own runs at the same instant.

    python bench/bench_dataset_race.py [--backends server_pg,sqlite] [--procs 6] [--repeats 3]

What two searches starting at the same moment in one experiment do with their parent runs: MLflow's
SQL store looks the dataset up, then inserts it, so concurrent first inserts collide on the
datasets table's unique key. Each repeat uses a new experiment and ``--procs`` processes released
at one instant; each either calls ``MlflowClient.log_inputs`` once (``plain``) or tune_m3's
``tracking.datasets.log_dataset_inputs`` (``retry``: tried again when the error is a unique key).
Printed: how many of the processes failed, and the first error. Stores as in
``bench_concurrent_searches`` (``concurrent_stores.py``: fresh, servers on 127.0.0.1, stopped by
pid).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrent_stores import KINDS, open_store, start_pg  # noqa: E402

CHILD = r"""
import sys, time
from types import SimpleNamespace
from tune_m3.tracking import client, dataset_record
from tune_m3.tracking.datasets import dataset_inputs, log_dataset_inputs
uri, exp, t0, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
c = client(uri)
meta = SimpleNamespace(name="race", fingerprint="0123456789abcdef", synthetic=True, source={},
                       sizes={"train": 1}, modalities=["text"])
run = c.create_run(exp).info.run_id
while time.time() < t0:
    pass
try:
    if mode == "plain":
        c.log_inputs(run, datasets=dataset_inputs([dataset_record(meta)]))
    else:
        log_dataset_inputs(c, run, [dataset_record(meta)])
    print("ok")
except Exception as e:
    print("ERR", type(e).__name__, str(e)[:160])
"""


def one_race(uri: str, exp: str, procs: int, mode: str) -> list[str]:
    """The failures of ``procs`` processes released together (their imports done by then)."""
    t0 = time.time() + 10 + procs
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, uri, exp, str(t0), mode],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    outs = [p.communicate()[0].strip() for p in ps]
    return [o for o in outs if not o.startswith("ok")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="server_pg,sqlite", help=f"some of {', '.join(KINDS)}")
    p.add_argument("--procs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    kinds = [k for k in args.backends.split(",") if k]
    work = Path(tempfile.mkdtemp(prefix="bench_dataset_race_"))
    pg = None
    if "server_pg" in kinds:
        pg, why = start_pg()
        if pg is None:
            sys.exit(f"error: server_pg: {why}")
    from tune_m3 import tracking

    try:
        for kind in kinds:
            store = open_store(kind, work / kind, pg)
            try:
                c = tracking.client(store.uri)
                for mode in ("plain", "retry"):
                    for rep in range(args.repeats):
                        exp = c.create_experiment(f"{mode}{rep}")
                        errs = one_race(store.uri, exp, args.procs, mode)
                        first = errs[0].splitlines()[0][:140] if errs else ""
                        print(f"{kind} {mode} {rep}: {len(errs)}/{args.procs} failed {first}")
            finally:
                store.close()
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
