"""``python -m tune_m3.tracking resync FILE``: replay MLflow writes a search could not make.

A search whose tracking server stayed down until the end saves what it could not write in
``unlogged.json`` (see ``tune_m3/tracking/writes.py``) and prints this command. The writes are
replayed in their order; a run that was created while the server was down is created now and
the writes that refer to its placeholder id go to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tune_m3.errors import UserError, cli_main
from tune_m3.tracking import writes as w
from tune_m3.tracking.store import client, default_tracking_uri


def resync(path: str | Path, uri: str) -> int:
    """Replay ``unlogged.json`` into ``uri``; returns the number of writes replayed."""
    path = Path(path)
    try:
        items = w.load(path)
    except (OSError, ValueError) as err:  # missing, unreadable, not JSON (JSONDecodeError)
        raise UserError(
            f"{path}: not an unlogged.json written by a search ({type(err).__name__}: "
            f"{str(err)[:200]}); give the file named in the search's WARNING line"
        ) from None
    queue = w.WriteBehind(client(uri), retry_every=0.0)
    for item in items:
        queue._apply(item)  # in order; an error here is real and stops the replay
    return len(items)


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tune_m3.tracking")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("resync", help="replay MLflow writes that failed during a search")
    r.add_argument("file")
    r.add_argument("--tracking-uri", "--mlflow-uri", dest="tracking_uri", default=None)
    args = p.parse_args(argv)
    n = resync(args.file, args.tracking_uri or default_tracking_uri())
    print(f"replayed {n} MLflow writes from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
