"""``python -m tune_m3.data``: import feature files, build the synthetic benchmark, list the store."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from tune_m3.data.api import DataWarning, build_synthetic, import_file
from tune_m3.data.store import DatasetMeta, list_datasets, read_meta, resolve_data_dir
from tune_m3.data.synthetic import SHAPES
from tune_m3.errors import cli_main
from tune_m3.names import SPLITS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tune_m3.data",
        description="Manage tune_m3's dataset store (Parquet per split; see docs/data.md).",
    )
    _add_data_dir(p, default=None)
    sub = p.add_subparsers(dest="cmd", required=True)

    imp = sub.add_parser("import", help="convert a published feature pickle into the store")
    imp.add_argument(
        "file", help="the .pkl file (mosei_senti_data.pkl, mosi_data.pkl, aligned_50.pkl)"
    )
    imp.add_argument("--dataset", required=True, help="name to store it under, e.g. mosei or mosi")
    imp.add_argument(
        "--format",
        default="mult",
        choices=["mult", "mmsa"],
        help="mult: MulT/MultiBench layout (default); mmsa: MMSA aligned_50.pkl",
    )
    imp.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_data_dir(imp)

    syn = sub.add_parser("synth", help="build the synthetic MOSEI/MOSI-shaped benchmark")
    syn.add_argument("--dataset", default="mosei", choices=sorted(SHAPES), help="shape to imitate")
    syn.add_argument("--scale", type=float, default=1.0, help="fraction of the real split sizes")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--name", help="store name (default synth_<dataset>[_x<scale>])")
    syn.add_argument("--text-strength", type=float, help="weight of the text-borne signal")
    syn.add_argument("--redundancy", type=float, help="how strongly audio/vision echo it")
    syn.add_argument(
        "--unaligned",
        action="store_true",
        help="audio/vision get 3x/2x as many steps as text (default name synth_<dataset>_unaligned)",
    )
    syn.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_data_dir(syn)

    info = sub.add_parser("info", help="what is in the store")
    info.add_argument("name", nargs="?", help="one dataset (default: all)")
    _add_data_dir(info)
    return p


def _add_data_dir(p: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """``--data-dir`` before or after the subcommand (``import F --data-dir D`` like every CLI).

    The subcommand's copy has no default (SUPPRESS), so it only overrides the top-level value
    when it is given; given in both places, the one after the subcommand wins.
    """
    p.add_argument(
        "--data-dir",
        default=default,
        help="store directory (default: $TUNE_M3_DATA_DIR or ~/.cache/tune_m3/data)",
    )


def _describe(meta) -> str:
    kind = "SYNTHETIC" if meta.synthetic else "imported"
    src = meta.source.get("path") or f"generator seed {meta.source.get('config', {}).get('seed')}"
    dims = " ".join(f"{m}={meta.dims[m]}" for m in meta.modalities)
    sizes = " ".join(f"{s}={meta.sizes[s]}" for s in SPLITS if s in meta.sizes)
    bad = sum(sum(v.values()) for v in meta.nonfinite_replaced.values())
    steps = " ".join(f"{m}={meta.seq_lens[m]}" for m in meta.modalities)
    mean = " ".join(
        f"{m}={meta.mean_lengths[m]:.1f}" for m in meta.modalities if m in meta.mean_lengths
    )
    lines = [
        f"{meta.name}  [{kind}{', like ' + meta.like if meta.synthetic and meta.like else ''}]",
        f"  splits: {sizes}   dims: {dims}",
        f"  steps L: {steps}   {'aligned' if meta.aligned else 'UNALIGNED'}   mean valid: {mean or 'n/a (older store)'}",
        f"  source: {src}   fingerprint {meta.fingerprint}",
        f"  non-finite feature values replaced by 0: {bad}",
    ]
    lines += [f"  WARNING: {w}" for w in meta.warnings()]
    return "\n".join(lines)


def _import(file: str, dataset: str, fmt: str, root: Path, overwrite: bool) -> DatasetMeta:
    """Import, printing the importer's data warnings as loud ``warning:`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        meta = import_file(file, dataset, fmt, root, overwrite)
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return meta


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = resolve_data_dir(args.data_dir)
    t0 = time.perf_counter()
    if args.cmd == "import":
        print(f"importing {args.file} ({args.format} layout) as '{args.dataset}' into {root}")
        print(_describe(_import(args.file, args.dataset, args.format, root, args.overwrite)))
    elif args.cmd == "synth":
        knobs = {
            k: v
            for k, v in {"text_strength": args.text_strength, "redundancy": args.redundancy}.items()
            if v is not None
        }
        kind = "unaligned " if args.unaligned else ""
        print(
            f"building the SYNTHETIC {kind}{args.dataset}-shaped benchmark (scale {args.scale:g}) "
            f"in {root}"
        )
        meta = build_synthetic(
            args.dataset,
            args.scale,
            args.seed,
            args.name,
            root,
            args.overwrite,
            progress=True,
            unaligned=args.unaligned,
            **knobs,
        )
        print(_describe(meta))
    else:
        metas = [read_meta(args.name, root)] if args.name else list_datasets(root)
        if not metas:
            print(f"the store {root} is empty; see `python -m tune_m3.data --help`")
        for m in metas:
            print(_describe(m))
        return 0
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
