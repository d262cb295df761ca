"""The dataset store: one directory, one sub-directory per dataset, Parquet per split.

Layout (decided here; ``docs/data.md`` explains it to users)::

    <data dir>/                       $TUNE_M3_DATA_DIR, --data-dir, or ~/.cache/tune_m3/data
      <name>/
        meta.json                     DatasetMeta: dims, steps per modality, aligned flag, sizes,
                                      source fingerprint, synthetic flag, data warnings
        train.parquet valid.parquet test.parquet

Each split file has one row per sample and the columns ``id`` (string), ``label`` (float32),
``lengths_text``, ``lengths_audio``, ``lengths_vision`` (int32: valid steps of each modality's
front-padded sequence; ``names.length_key``), ``length`` (int32, = ``lengths_text``: what stores
before per-modality lengths had, kept so that older readers work) and one column per modality of
type ``fixed_size_binary[L_m * d_m * 4]`` holding the sample's (L_m, d_m) features as
little-endian float32, row-major (dims and steps are in ``meta.json``). A store written before
per-modality lengths (no ``seq_lens`` in ``meta.json``, no ``lengths_<m>`` columns) loads as
aligned, every modality with the ``length`` column.

Why this shape: a fixed-size binary column is one contiguous buffer, so reading a split gives
the whole (N, L, d) array as a zero-copy numpy *view* of the Arrow buffer, with no per-sample
objects. We measured the obvious alternative, ``fixed_size_list<float32>``: Parquet stores it
with repetition/definition levels per value, and reading MOSEI's text column then allocates
twice its size in memory and takes about 6x longer (``bench/bench_store.py``). Each split is written as a single
row group, uncompressed and without dictionary encoding, so that Arrow returns exactly one chunk
per column: one buffer per modality, never a second copy from concatenating chunks. The file is
read through a memory map; the decoded buffers are the only copy in anonymous memory.

Writes are atomic: a dataset is written into a temporary sibling directory and renamed into
place at the end, so an interrupted or failed import leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tune_m3.data.formats import (
    MODALITIES,
    SPLITS,
    CanonicalSplit,
    empty_modality_warning,
    padding_dropped_warning,
)
from tune_m3.errors import UserError
from tune_m3.names import LENGTHS, length_key

ENV_DATA_DIR = "TUNE_M3_DATA_DIR"
STORE_FORMAT_VERSION = 1


def default_data_dir() -> Path:
    """``$TUNE_M3_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/tune_m3/data`` (``~/.cache/...``)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tune_m3" / "data"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


@dataclass
class DatasetMeta:
    """What a dataset is, written as ``meta.json`` beside its splits."""

    name: str
    synthetic: bool
    modalities: tuple[str, ...]
    dims: dict[str, int]  # modality -> feature size d
    seq_len: int  # L of text (all modalities when aligned; kept for older readers)
    sizes: dict[str, int]  # split -> N
    source: dict  # {"kind": "import", "path", "sha256", "format"} or {"kind": "synthetic", ...}
    nonfinite_replaced: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # split -> modality -> n
    # split -> modality -> "all zeros" | "all non-finite": a modality with no information there
    empty_modalities: dict[str, dict[str, str]] = field(default_factory=dict)
    like: str | None = None  # the real dataset a synthetic one imitates ("mosei", "mosi")
    created: str = ""
    format_version: int = STORE_FORMAT_VERSION
    # modality -> L_m (steps); older stores lack it: every modality has seq_len steps
    seq_lens: dict[str, int] = field(default_factory=dict)
    aligned: bool = True  # False: steps differ per modality (MulT *_noalign, MMSA unaligned_*)
    mean_lengths: dict[str, float] = field(default_factory=dict)  # modality -> mean valid steps
    # split -> modality -> samples whose steps past their stated length were dropped (MMSA)
    padding_dropped: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seq_lens:  # a store written before per-modality lengths: aligned
            self.seq_lens = {m: self.seq_len for m in self.modalities}

    def warnings(self) -> list[str]:
        """What a user must hear about this data (printed by import and ``data info``)."""
        out = [
            empty_modality_warning(split, m, kind)
            for split, mods in self.empty_modalities.items()
            for m, kind in mods.items()
        ]
        out += [
            padding_dropped_warning(split, m, count)
            for split, mods in self.padding_dropped.items()
            for m, count in mods.items()
        ]
        return out

    @property
    def fingerprint(self) -> str:
        """Short identity of the data: the source file's sha256, or the generator's parameter hash."""
        return str(self.source.get("sha256") or self.source.get("fingerprint") or "")[:16]

    def to_json(self) -> str:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetMeta:
        d = json.loads(text)
        d["modalities"] = tuple(d["modalities"])
        return cls(**d)


@dataclass(frozen=True)
class Split:
    """One split in memory. Arrays are read-only views of the store's buffers (no copies)."""

    features: dict[str, np.ndarray]  # modality -> (N, L_m, d_m) float32
    labels: np.ndarray  # (N,) float32
    lengths: np.ndarray  # (N,) int32: text's valid steps (aligned data: every modality's)
    ids: np.ndarray  # (N,) str
    # modality -> (N,) int32 valid steps of that modality; empty means "all equal ``lengths``"
    modality_lengths: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def lengths_of(self, modality: str) -> np.ndarray:
        return self.modality_lengths.get(modality, self.lengths)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for the Ray object store or a torch batch).

        Keys: each modality's ``(N, L_m, d_m)`` features, ``labels`` ``(N,)``, one ``(N,)`` int32
        valid-length column per modality under ``names.length_key(m)`` (``lengths_text``, ...)
        and ``lengths`` (= ``lengths_text``; on aligned data every modality's), for older readers.
        """
        lens = {length_key(m): self.lengths_of(m) for m in self.features}
        return {**self.features, "labels": self.labels, LENGTHS: self.lengths, **lens}


@dataclass(frozen=True)
class Dataset:
    meta: DatasetMeta
    splits: dict[str, Split]

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.meta.modalities

    def input_dims(self) -> tuple[int, ...]:
        return tuple(self.meta.dims[m] for m in self.meta.modalities)


# ----------------------------------------------------------------------------- writing


def _split_table(split: CanonicalSplit) -> pa.Table:
    n = split.size
    columns: dict[str, pa.Array] = {
        "id": pa.array(split.ids.astype(str), type=pa.string()),
        "label": pa.array(split.labels.astype(np.float32)),
        "length": pa.array(split.lengths.astype(np.int32)),  # text's; what older readers read
    }
    for m in MODALITIES:
        columns[length_key(m)] = pa.array(split.lengths_of(m).astype(np.int32))
    for m in MODALITIES:
        x = np.ascontiguousarray(split.features[m], dtype="<f4")  # (N, L, d)
        width = int(x.shape[1] * x.shape[2] * 4)
        # zero-copy wrap of the numpy buffer: row b is the bytes of x[b]
        columns[m] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), n, [None, pa.py_buffer(x)]
        )
    return pa.table(columns)


def write_dataset(
    data_dir: str | Path,
    name: str,
    splits: Mapping[str, CanonicalSplit],
    *,
    synthetic: bool,
    source: dict,
    like: str | None = None,
    overwrite: bool = False,
) -> DatasetMeta:
    """Write ``splits`` as dataset ``name`` atomically (temp dir, then rename)."""
    data_dir = Path(data_dir)
    _check_name(name)
    target = data_dir / name
    if target.exists() and not overwrite:
        raise UserError(
            f"dataset '{name}' already exists in {data_dir}; pass --overwrite to replace it "
            f"or --name to store it under another name"
        )
    meta = _meta_of(name, splits, synthetic=synthetic, source=source, like=like)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=data_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; a store is often shared (NFS, other users)
    try:
        _write_files(tmp, splits, meta)
        if target.exists():
            old = target.with_name(f".{name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _meta_of(
    name: str,
    splits: Mapping[str, CanonicalSplit],
    *,
    synthetic: bool,
    source: dict,
    like: str | None,
) -> DatasetMeta:
    """The dataset's ``meta.json``: shapes, sizes, lengths, provenance and what was cleaned."""
    first = splits[SPLITS[0]]
    seq_lens = first.seq_lens
    total = sum(splits[s].size for s in SPLITS)
    mean_lengths = {
        m: round(float(sum(splits[s].lengths_of(m).sum() for s in SPLITS)) / total, 2)
        for m in MODALITIES
    }
    return DatasetMeta(
        name=name,
        synthetic=synthetic,
        modalities=MODALITIES,
        dims={m: int(first.features[m].shape[2]) for m in MODALITIES},
        seq_len=int(first.features[MODALITIES[0]].shape[1]),
        sizes={s: splits[s].size for s in SPLITS},
        source=source,
        nonfinite_replaced={s: dict(splits[s].nonfinite_replaced) for s in SPLITS},
        empty_modalities={
            s: dict(splits[s].empty_modalities) for s in SPLITS if splits[s].empty_modalities
        },
        like=like,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seq_lens={m: seq_lens[m] for m in MODALITIES},
        aligned=len(set(seq_lens.values())) == 1,
        mean_lengths=mean_lengths,
        padding_dropped={
            s: dict(splits[s].padding_dropped) for s in SPLITS if splits[s].padding_dropped
        },
    )


def _write_files(folder: Path, splits: Mapping[str, CanonicalSplit], meta: DatasetMeta) -> None:
    """One Parquet file per split (one row group, uncompressed: read back as one chunk) + meta."""
    for s in SPLITS:
        table = _split_table(splits[s])
        pq.write_table(
            table,
            folder / f"{s}.parquet",
            row_group_size=max(1, table.num_rows),  # one row group -> one chunk on read
            compression="none",
            use_dictionary=False,
        )
    (folder / "meta.json").write_text(meta.to_json())


def _check_name(name: str) -> None:
    from tune_m3.path_names import check_component

    check_component(name, "dataset name")


# ----------------------------------------------------------------------------- reading


def list_datasets(data_dir: str | Path | None = None) -> list[DatasetMeta]:
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not (d / "meta.json").is_file():
            continue
        out.append(_load_meta(d / "meta.json"))
    return out


def read_meta(name: str, data_dir: str | Path | None = None) -> DatasetMeta:
    """Read a dataset's metadata only (cheap; used to fail fast before starting Ray)."""
    root = resolve_data_dir(data_dir)
    path = root / name / "meta.json"
    if not path.is_file():
        have = [m.name for m in list_datasets(root)]
        raise UserError(missing_dataset_message(name, root, have))
    return _load_meta(path)


def _load_meta(path: Path) -> DatasetMeta:
    try:
        return DatasetMeta.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        raise UserError(
            f"{path}: unreadable dataset metadata ({type(err).__name__}: {str(err)[:200]}); "
            "the dataset is corrupt, re-create it (import or synth with --overwrite)"
        ) from None


def missing_dataset_message(name: str, root: Path, have: list[str]) -> str:
    like = name.removeprefix("synth_").split("_x")[0]
    unaligned = like.endswith("_unaligned")
    like = like.removesuffix("_unaligned")
    lines = [
        f"dataset '{name}' is not in the store {root}"
        + (f" (it holds: {', '.join(have)})" if have else " (it is empty)")
        + ".",
        f"  - real features: python -m tune_m3.data import FILE.pkl --dataset {name} --format mult|mmsa"
        f" --data-dir {root}  (docs/data.md says where to get the files)",
    ]
    if like in ("mosei", "mosi"):
        lines.append(
            f"  - or run on synthetic data instead: python -m tune_m3.data synth --dataset {like}"
            f"{' --unaligned' if unaligned else ''} --data-dir {root}, then use --dataset "
            f"synth_{like}{'_unaligned' if unaligned else ''} (results are labelled synthetic)"
        )
    return "\n".join(lines)


def _column_array(table: pa.Table, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    col = table.column(name)
    if col.num_chunks != 1:  # written as one row group, so this only happens for foreign files
        col = pa.chunked_array([col.combine_chunks()])
    chunk = col.chunk(0)
    if isinstance(chunk.type, pa.FixedSizeBinaryType):
        expected = int(np.prod(shape_tail)) * 4
        if chunk.type.byte_width != expected:
            raise UserError(
                f"column '{name}' holds {chunk.type.byte_width} bytes per sample, meta.json says "
                f"{shape_tail} float32 ({expected} bytes); the dataset is corrupt, re-create it"
            )
        buf = chunk.buffers()[1]
        start = chunk.offset * expected
        arr = np.frombuffer(buf, dtype="<f4", count=len(chunk) * expected // 4, offset=start)
        arr = arr.reshape((len(chunk), *shape_tail))
    else:
        arr = chunk.to_numpy(zero_copy_only=True)
    arr.flags.writeable = False  # shared by every trial: nobody may write into it
    return arr


def load_dataset(
    name: str, data_dir: str | Path | None = None, splits: tuple[str, ...] = SPLITS
) -> Dataset:
    """Load dataset ``name`` from the store: read-only numpy views of the Parquet buffers.

    Loading MOSEI at full size costs one copy of its features in memory (about 1.9 GB as
    float32); nothing is duplicated per modality or per split.
    """
    meta = read_meta(name, data_dir)
    root = resolve_data_dir(data_dir) / name
    out: dict[str, Split] = {}
    for s in splits:
        path = root / f"{s}.parquet"
        try:
            table = pq.read_table(path, memory_map=True, use_threads=True)
        except (OSError, pa.ArrowInvalid) as err:
            raise UserError(
                f"{path}: cannot read ({err}); re-create the dataset (import or synth with --overwrite)"
            ) from None
        feats = {
            m: _column_array(table, m, (meta.seq_lens[m], meta.dims[m])) for m in meta.modalities
        }
        names = set(table.column_names)  # stores before per-modality lengths have "length" only
        out[s] = Split(
            features=feats,
            labels=_column_array(table, "label", ()),
            lengths=_column_array(table, "length", ()),
            ids=np.asarray(table.column("id").to_pylist()),
            modality_lengths={
                m: _column_array(table, length_key(m), ())
                for m in meta.modalities
                if length_key(m) in names
            },
        )
    return Dataset(meta=meta, splits=out)
