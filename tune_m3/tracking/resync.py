"""``python -m tune_m3.tracking resync FILE``: replay MLflow writes a search could not make.

A search whose tracking server stayed down until the end saves what it could not write in
``unlogged.json`` (see ``tune_m3/tracking/writes.py``) and prints this command. The writes are
replayed in their order; a run that was created while the server was down is created now, and
every ``pending:<id>`` placeholder (the run a write goes to, ``best.run_id``, tags, the
``run_id`` column of ``trials.parquet`` / ``summary.csv`` beside the file and their artifact
copies) becomes its real run id.

Idempotent: each write is replayed once. After a full replay the file is renamed
``unlogged.replayed.json`` (with the placeholder -> run id map), and a second ``resync`` of the
same path says so and changes nothing. If the server fails part-way, the writes not yet made are
saved back into FILE (placeholders already created replaced by their ids): run it again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tune_m3.errors import UserError, cli_main
from tune_m3.tracking import writes as w
from tune_m3.tracking.store import client, default_tracking_uri

#: the search's own tables beside unlogged.json that may hold placeholder run ids
TABLES = ("trials.parquet", "summary.csv")


def replayed_path(path: Path) -> Path:
    return path.with_name(path.stem + ".replayed.json")


def resync(path: str | Path, uri: str) -> int:
    """Replay ``unlogged.json`` into ``uri``; returns the number of writes replayed (0: done
    before)."""
    path = Path(path)
    if not path.exists() and replayed_path(path).exists():
        return 0
    items = _load(path)
    queue = w.WriteBehind(client(uri), retry_every=0.0)
    for done, item in enumerate(items):
        try:
            queue._apply(item)  # in order
        except Exception as err:
            w.dump(items[done:], path, queue.bound)
            raise UserError(
                f"resync stopped after {done} of {len(items)} writes ({type(err).__name__}: "
                f"{str(err)[:200]}); the other {len(items) - done} are saved in {path}: run the "
                "same command again once the server answers"
            ) from None
    for name in TABLES:
        w.unpend_file(path.parent / name, queue.bound)
    record = {"replayed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "writes": len(items)}
    replayed_path(path).write_text(json.dumps({**record, "bound": queue.bound}, indent=1))
    path.unlink()
    return len(items)


def _load(path: Path) -> list[w.Write]:
    try:
        return w.load(path)
    except (OSError, ValueError) as err:  # missing, unreadable, not JSON (JSONDecodeError)
        raise UserError(
            f"{path}: not an unlogged.json written by a search ({type(err).__name__}: "
            f"{str(err)[:200]}); give the file named in the search's WARNING line"
        ) from None


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tune_m3.tracking")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("resync", help="replay MLflow writes that failed during a search")
    r.add_argument("file")
    r.add_argument("--tracking-uri", "--mlflow-uri", dest="tracking_uri", default=None)
    args = p.parse_args(argv)
    n = resync(args.file, args.tracking_uri or default_tracking_uri())
    if n == 0:
        done = json.loads(replayed_path(Path(args.file)).read_text())
        print(
            f"{args.file} was already replayed ({done.get('writes')} writes, "
            f"{done.get('replayed_at')}; see {replayed_path(Path(args.file))}): nothing to do, "
            "nothing changed"
        )
    else:
        print(f"replayed {n} MLflow writes from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
