"""Importers, the Parquet store and `python -m tune_m3.data`: round trips and every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_feature_obj, write_pickle

from tune_m3.data import import_file, list_datasets, load_dataset
from tune_m3.data.formats import valid_lengths
from tune_m3.errors import UserError


def _run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune_m3.data", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fmt,like", [("mult", "mosei"), ("mmsa", "mosei"), ("mult", "mosi")])
def test_import_round_trips_exactly(tmp_path, store, fmt, like):
    obj = make_feature_obj(fmt, like)
    path = write_pickle(obj, tmp_path / "f.pkl")
    meta = import_file(path, like, fmt)
    assert meta.synthetic is False and meta.source["format"] == fmt
    assert meta.dims == dict(
        zip(
            ("text", "audio", "vision"),
            {"mosei": (300, 74, 35), "mosi": (300, 5, 20)}[like],
            strict=True,
        )
    )
    assert meta.sizes == {"train": 9, "valid": 4, "test": 5} and meta.seq_len == 7
    ds = load_dataset(like)
    label_key = "labels" if fmt == "mult" else "regression_labels"
    for s in ("train", "valid", "test"):
        sp = ds.splits[s]
        for m in ("text", "audio", "vision"):
            np.testing.assert_array_equal(sp.features[m], obj[s][m])
            assert sp.features[m].dtype == np.float32
            assert not sp.features[m].flags.writeable
        np.testing.assert_array_equal(sp.labels, np.asarray(obj[s][label_key]).reshape(-1))
        assert list(sp.ids) == list(obj[s]["id"])
        np.testing.assert_array_equal(
            sp.lengths, valid_lengths({m: obj[s][m] for m in ("text", "audio", "vision")})
        )


def test_lengths_of_front_padded_sequences():
    x = np.zeros((3, 5, 2), np.float32)
    x[0, 2:] = 1  # 3 valid steps
    x[1, :] = 1  # all valid
    # x[2] all zero: length 1 by convention
    a = np.zeros((3, 5, 1), np.float32)
    a[0, 1, 0] = 1  # audio starts one step earlier than text
    np.testing.assert_array_equal(valid_lengths({"text": x, "audio": a}), [4, 5, 1])


def test_nonfinite_features_replaced_and_counted(tmp_path, store):
    obj = make_feature_obj("mult")
    obj["train"]["audio"][0, -1, 0] = -np.inf
    obj["train"]["audio"][1, -1, :3] = np.nan
    meta = import_file(write_pickle(obj, tmp_path / "f.pkl"), "mosei", "mult")
    assert meta.nonfinite_replaced["train"]["audio"] == 4
    audio = load_dataset("mosei").splits["train"].features["audio"]
    assert np.isfinite(audio).all() and audio[0, -1, 0] == 0 and (audio[1, -1, :3] == 0).all()


@pytest.mark.parametrize(
    "kind,fill", [("all zeros", 0.0), ("all non-finite", np.nan), ("all non-finite", -np.inf)]
)
def test_empty_modality_warns_and_info_shows_it(tmp_path, store, capsys, kind, fill):
    """A modality with nothing in it in one split imports (as zeros), loudly."""
    from tune_m3.data import DataWarning
    from tune_m3.data.__main__ import main

    obj = make_feature_obj("mult")
    obj["valid"]["vision"] = np.full_like(obj["valid"]["vision"], fill)
    path = write_pickle(obj, tmp_path / "f.pkl")
    with pytest.warns(DataWarning, match=f"split 'valid', modality 'vision' is {kind.upper()}"):
        meta = import_file(path, "mosei", "mult")
    assert meta.empty_modalities == {"valid": {"vision": kind}}
    assert not load_dataset("mosei").splits["valid"].features["vision"].any()
    # the CLI: one loud line on stderr at import, and `info` shows it for as long as it is stored
    assert main(["import", str(path), "--dataset", "again"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "'vision' is " + kind.upper() in err
    assert main(["info", "again"]) == 0
    assert f"WARNING: split 'valid', modality 'vision' is {kind.upper()}" in capsys.readouterr().out


def test_clean_import_has_no_warning(tmp_path, store, mult_file, recwarn):
    meta = import_file(mult_file, "mosei")
    assert meta.empty_modalities == {} and meta.warnings() == []
    assert not [w for w in recwarn if "modality" in str(w.message)]


def test_old_meta_without_new_fields_still_loads(store, mult_file):
    import json

    import_file(mult_file, "mosei")
    path = store / "mosei" / "meta.json"
    d = json.loads(path.read_text())
    del d["empty_modalities"]
    path.write_text(json.dumps(d))
    ds = load_dataset("mosei")
    assert ds.meta.empty_modalities == {} and ds.splits["train"].size == 9


def _mutations():
    """(id, mutate(obj), expected message fragment) for the bad-input table."""

    def set_(split, key, fn):
        def f(o):
            o[split][key] = fn(o[split][key])

        return f

    def delete(split, key=None):
        def f(o):
            if key is None:
                del o[split]
            else:
                del o[split][key]

        return f

    def labels_bad(v):
        def f(o):
            lab = o["valid"]["labels"].copy()
            lab[1, 0, 0] = v
            o["valid"]["labels"] = lab

        return f

    return [
        ("missing-split", delete("test"), "missing split(s) ['test']"),
        ("missing-key", delete("train", "vision"), "split 'train' has no key(s) ['vision']"),
        ("missing-labels", delete("train", "labels"), "no key(s) ['labels']"),
        ("rank-2", set_("train", "audio", lambda x: x[:, :, 0]), "key 'audio': expected rank 3"),
        (
            "rank-4",
            set_("test", "text", lambda x: x[..., None]),
            "split 'test', key 'text': expected rank 3",
        ),
        (
            "short-modality",
            set_("train", "vision", lambda x: x[:-1]),
            "key 'vision': shape (8, 7, 35) does not match",
        ),
        (  # one split unaligned, the others not: steps must agree across splits
            "steps-differ-between-splits",
            set_("valid", "audio", lambda x: x[:, :-1]),
            "split 'valid', key 'audio': 6 steps, but 7 in split 'train'",
        ),
        ("label-count", set_("train", "labels", lambda x: x[:-2]), "one label per sample"),
        ("nan-label", labels_bad(np.nan), "split 'valid', key 'labels': 1 non-finite label"),
        ("inf-label", labels_bad(np.inf), "non-finite label"),
        ("out-of-range-label", labels_bad(7.0), "outside [-3, 3]"),
        (
            "empty-split",
            lambda o: o.__setitem__("valid", {k: v[:0] for k, v in o["valid"].items()}),
            "split 'valid' is empty",
        ),
        ("split-not-dict", lambda o: o.__setitem__("train", [1, 2]), "split 'train' is a list"),
        (
            "text-as-strings",
            set_("train", "text", lambda x: np.full(x.shape, "a")),
            "expected numbers",
        ),
        (
            "dims-differ",
            set_("test", "audio", lambda x: np.zeros((*x.shape[:2], 3), np.float32)),
            "feature sizes differ",
        ),
        ("top-level-list", lambda o: o.clear() or None, "missing split(s)"),
        (
            "zero-steps",
            set_("valid", "audio", lambda x: x[:, :0]),
            "split 'valid', key 'audio': shape (4, 0, 74) has 0 time steps (L = 0)",
        ),
        (
            "string-labels",
            set_("test", "labels", lambda x: np.full(x.shape, "positive")),
            "split 'test', key 'labels': labels must be numbers",
        ),
        (
            "word-in-labels",
            set_("train", "labels", lambda x: np.array([*x.reshape(-1)[:-1], "n/a"], dtype=object)),
            "'labels': labels must be numbers, got dtype object (e.g. 'n/a' at index 8)",
        ),
    ]


@pytest.mark.parametrize("case,mutate,message", _mutations(), ids=[c[0] for c in _mutations()])
def test_bad_feature_files_rejected_with_clear_message(tmp_path, store, case, mutate, message):
    obj = make_feature_obj("mult")
    mutate(obj)
    path = write_pickle(obj, tmp_path / "bad.pkl")
    with pytest.raises(UserError) as err:
        import_file(path, "mosei", "mult")
    assert message in str(err.value)
    assert "bad.pkl" in str(err.value)
    # nothing half-written: no dataset, no temporary directory left behind
    assert list_datasets(store) == []
    assert not store.exists() or not any(store.iterdir())


def test_wrong_format_flag_suggests_the_right_one(tmp_path, store, mmsa_file):
    with pytest.raises(UserError, match="use --format mmsa"):
        import_file(mmsa_file, "mosei", "mult")


def test_existing_dataset_needs_overwrite(store, mult_file):
    import_file(mult_file, "mosei")
    with pytest.raises(UserError, match="--overwrite"):
        import_file(mult_file, "mosei")
    import_file(mult_file, "mosei", overwrite=True)
    assert [m.name for m in list_datasets()] == ["mosei"]


def test_load_missing_dataset_says_how_to_get_it(store):
    with pytest.raises(UserError) as err:
        load_dataset("mosei")
    msg = str(err.value)
    assert (
        "python -m tune_m3.data import" in msg
        and "python -m tune_m3.data synth --dataset mosei" in msg
    )


def test_cli_import_info_and_errors(tmp_path, mult_file):
    root = tmp_path / "cli_store"
    ok = _run_cli("import", str(mult_file), "--dataset", "mosei", "--format", "mult", data_dir=root)
    assert ok.returncode == 0, ok.stderr
    assert "imported" in ok.stdout and "text=300 audio=74 vision=35" in ok.stdout
    info = _run_cli("info", data_dir=root)
    assert info.returncode == 0 and "mosei" in info.stdout and "train=9" in info.stdout
    # user errors: one line on stderr, exit 2, no traceback
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    for args in (
        ("import", str(evil), "--dataset", "x"),
        ("import", str(tmp_path / "absent.pkl"), "--dataset", "x"),
        ("info", "nope"),
    ):
        bad = _run_cli(*args, data_dir=root)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in root.iterdir()) == ["mosei"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_data_dir_before_or_after_the_subcommand(tmp_path, monkeypatch, mult_file, capsys, where):
    """`--data-dir D import F` and `import F --data-dir D` (and synth, info) mean the same."""
    from tune_m3.data.__main__ import main

    monkeypatch.setenv("TUNE_M3_DATA_DIR", str(tmp_path / "env_store"))  # must not be used
    root = tmp_path / "store"

    def run(*args: str) -> int:
        dd = ["--data-dir", str(root)]
        return main([*dd, *args] if where == "before" else [*args, *dd])

    assert run("import", str(mult_file), "--dataset", "mosei") == 0
    assert run("synth", "--dataset", "mosi", "--scale", "0.001", "--name", "s") == 0
    capsys.readouterr()
    assert run("info") == 0
    out = capsys.readouterr().out
    assert "mosei  [imported" in out and "s  [SYNTHETIC" in out
    assert run("info", "s") == 0 and "s  [SYNTHETIC" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["mosei", "s"]
    assert not (tmp_path / "env_store").exists()


def test_data_dir_after_the_subcommand_wins(tmp_path, mult_file):
    from tune_m3.data.__main__ import _parser

    args = _parser().parse_args(["--data-dir", "A", "info", "--data-dir", "B"])
    assert args.data_dir == "B"
    assert _parser().parse_args(["--data-dir", "A", "info"]).data_dir == "A"
    assert _parser().parse_args(["info"]).data_dir is None
