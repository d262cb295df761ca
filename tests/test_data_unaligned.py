"""Unaligned features: MulT *_noalign.pkl and MMSA unaligned_*.pkl, per-modality lengths, synth.

The files built here follow the published layouts exactly (keys, ranks, padding side); steps
are small (text 6, audio 15, vision 12) so every test runs in well under a second.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_pickle

from tune_m3.data import DataWarning, build_synthetic, import_file, list_datasets, load_dataset
from tune_m3.data.formats import end_to_front
from tune_m3.data.synthetic import UNALIGNED_STEPS, SynthConfig, generate
from tune_m3.errors import UserError
from tune_m3.names import LENGTHS, MODALITIES, length_key

STEPS = {"text": 6, "audio": 15, "vision": 12}
DIMS = {"text": 300, "audio": 74, "vision": 35}
SIZES = {"train": 9, "valid": 4, "test": 5}


def _lengths(rng, n: int) -> dict[str, np.ndarray]:
    lt = rng.integers(1, STEPS["text"] + 1, size=n)
    lt[0] = STEPS["text"]  # one full-length sample
    return {
        "text": lt,
        "audio": np.minimum(lt * 2 + rng.integers(0, 3, size=n), STEPS["audio"]),
        "vision": np.minimum(lt * 2, STEPS["vision"]),
    }


def _feats(rng, n: int, m: str, lengths: np.ndarray, side: str, pad_value=0.0) -> np.ndarray:
    L = STEPS[m]
    t = np.arange(L)[None, :]
    valid = t >= L - lengths[:, None] if side == "front" else t < lengths[:, None]  # (n, L)
    x = rng.standard_normal((n, L, DIMS[m])).astype(np.float32) + 0.1  # no step sums to 0
    return np.where(valid[..., None], x, np.float32(pad_value))


def mult_noalign(seed: int = 0) -> tuple[dict, dict]:
    """MulT ``*_noalign.pkl``: like the aligned file, but L differs per modality; front-padded."""
    rng = np.random.default_rng(seed)
    obj, lens = {}, {}
    for s, n in SIZES.items():
        lens[s] = _lengths(rng, n)
        obj[s] = {m: _feats(rng, n, m, lens[s][m], "front") for m in MODALITIES}
        obj[s]["labels"] = (np.round(rng.uniform(-3, 3, (n, 1, 1)) * 3) / 3).astype(np.float32)
        obj[s]["id"] = np.array([[f"vid{i}", f"{i}"] for i in range(n)])  # (N, 2), as in MulT
    return obj, lens


def mmsa_unaligned(seed: int = 0, text_bert: bool = True) -> tuple[dict, dict]:
    """MMSA ``unaligned_*.pkl``: END-padded audio/vision with audio_lengths / vision_lengths;
    text of BERT outputs (non-zero at padding positions) with ``text_bert``'s mask row."""
    rng = np.random.default_rng(seed)
    obj, lens = {}, {}
    for s, n in SIZES.items():
        lens[s] = _lengths(rng, n)
        sp = {m: _feats(rng, n, m, lens[s][m], "end") for m in ("audio", "vision")}
        if text_bert:
            sp["text"] = rng.standard_normal((n, STEPS["text"], DIMS["text"])).astype(np.float32)
            mask = np.arange(STEPS["text"])[None, :] < lens[s]["text"][:, None]
            ids = rng.integers(100, 2000, (n, STEPS["text"])) * mask
            sp["text_bert"] = np.stack([ids, mask, np.zeros_like(ids)], axis=1).astype(np.float32)
        else:
            sp["text"] = _feats(rng, n, "text", lens[s]["text"], "end")
        labels = np.round(rng.uniform(-3, 3, n) * 3) / 3
        sp.update(
            raw_text=np.array(["a few words"] * n),
            id=np.array([f"clip{i}$_$0" for i in range(n)]),
            regression_labels=labels.astype(np.float32),
            classification_labels=(labels > 0).astype(np.float32),
            annotations=np.array(["Positive"] * n),
            audio_lengths=lens[s]["audio"].tolist(),  # MMSA stores Python lists
            vision_lengths=lens[s]["vision"].tolist(),
        )
        obj[s] = sp
    return obj, lens


def _front_from_end(x: np.ndarray, lengths) -> np.ndarray:
    """Reference conversion, one sample at a time."""
    out = np.zeros_like(x)
    for b, n in enumerate(lengths):
        n = max(int(n), 1)
        out[b, x.shape[1] - n :] = x[b, :n]
    return out


# ----------------------------------------------------------------------------- importers


def test_mult_noalign_round_trips_with_per_modality_lengths(tmp_path, store):
    obj, lens = mult_noalign()
    meta = import_file(write_pickle(obj, tmp_path / "mosei_senti_data_noalign.pkl"), "m", "mult")
    assert meta.aligned is False and meta.seq_lens == STEPS and meta.seq_len == STEPS["text"]
    assert meta.dims == DIMS and meta.sizes == SIZES and meta.warnings() == []
    total = sum(SIZES.values())
    for m in MODALITIES:
        mean = sum(lens[s][m].sum() for s in SIZES) / total
        assert meta.mean_lengths[m] == pytest.approx(mean, abs=0.01)
    ds = load_dataset("m")
    for s in SIZES:
        arrays = ds.splits[s].arrays()
        for m in MODALITIES:
            np.testing.assert_array_equal(arrays[m], obj[s][m])  # front-padded already: as is
            assert arrays[m].shape == (SIZES[s], STEPS[m], DIMS[m])
            np.testing.assert_array_equal(arrays[length_key(m)], lens[s][m])
            assert arrays[length_key(m)].dtype == np.int32
        np.testing.assert_array_equal(arrays[LENGTHS], lens[s]["text"])  # old readers: text
        np.testing.assert_array_equal(arrays["labels"], obj[s]["labels"].reshape(-1))
        assert list(ds.splits[s].ids) == [f"vid{i}_{i}" for i in range(SIZES[s])]


@pytest.mark.parametrize("text_bert", [True, False])
def test_mmsa_unaligned_end_padding_becomes_front_padding(tmp_path, store, recwarn, text_bert):
    obj, lens = mmsa_unaligned(text_bert=text_bert)
    meta = import_file(write_pickle(obj, tmp_path / "unaligned_50.pkl"), "u", "mmsa")
    assert meta.aligned is False and meta.seq_lens == STEPS and meta.warnings() == []
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]
    ds = load_dataset("u")
    for s in SIZES:
        arrays = ds.splits[s].arrays()
        for m in MODALITIES:
            np.testing.assert_array_equal(arrays[m], _front_from_end(obj[s][m], lens[s][m]))
            np.testing.assert_array_equal(arrays[length_key(m)], lens[s][m])
            # the stored convention: exactly the last `length` steps hold data
            pad = STEPS[m] - lens[s][m]
            for b in range(SIZES[s]):
                assert not arrays[m][b, : pad[b]].any() and arrays[m][b, pad[b] :].any(axis=1).all()
        np.testing.assert_array_equal(arrays[LENGTHS], lens[s]["text"])
        np.testing.assert_array_equal(arrays["labels"], obj[s]["regression_labels"])


def test_mmsa_steps_past_the_stated_length_are_dropped_and_reported(tmp_path, store):
    """MMSA's lengths stop at the first zero-sum step; data after it is dropped, loudly."""
    obj, lens = mmsa_unaligned()
    short = int(np.flatnonzero(lens["train"]["vision"][2:] < STEPS["vision"])[0]) + 2
    obj["train"]["vision"][short, -1] = 1.0  # data after the stated end
    obj["train"]["vision_lengths"][1] = 0  # stored as 1 (MMSA's floor); its steps 1.. dropped
    with pytest.warns(DataWarning, match="split 'train', modality 'vision': 2 sample"):
        meta = import_file(write_pickle(obj, tmp_path / "u.pkl"), "u", "mmsa")
    assert meta.padding_dropped == {"train": {"vision": 2}}
    vision = load_dataset("u").splits["train"]
    assert vision.arrays()[length_key("vision")][1] == 1
    lv = lens["train"]["vision"][short]
    np.testing.assert_array_equal(
        vision.features["vision"][short, -lv:], obj["train"]["vision"][short, :lv]
    )


def test_end_to_front_matches_the_per_sample_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2100, 9, 3)).astype(np.float32)  # > one conversion chunk
    lengths = rng.integers(1, 10, size=2100)
    x[np.arange(9)[None, :] >= lengths[:, None]] = 0
    y, dropped = end_to_front(x, lengths)
    np.testing.assert_array_equal(y, _front_from_end(x, lengths))
    assert dropped == 0
    x[0, 8] = 5.0 if lengths[0] < 9 else x[0, 8]
    assert end_to_front(x, lengths)[1] == int(lengths[0] < 9)


def _bad_cases():
    def mmsa(change):
        def build():
            obj, _ = mmsa_unaligned()
            change(obj)
            return obj, "mmsa"

        return build

    def mult(change):
        def build():
            obj, _ = mult_noalign()
            change(obj)
            return obj, "mult"

        return build

    def setk(split, key, value):
        return lambda o: o[split].__setitem__(key, value(o[split][key]))

    return [
        (
            "lengths-wrong-size",
            mmsa(setk("valid", "audio_lengths", lambda v: v[:-1])),
            "split 'valid', key 'audio_lengths': shape (3,) does not give one length per sample (4)",
        ),
        (
            "lengths-too-long",
            mmsa(setk("test", "vision_lengths", lambda v: [13, *v[1:]])),
            "split 'test', key 'vision_lengths': 1 length(s) longer than the 12 steps",
        ),
        (
            "lengths-negative",
            mmsa(setk("train", "audio_lengths", lambda v: [*v[:-1], -2])),
            "split 'train', key 'audio_lengths': 1 length(s) negative",
        ),
        (
            "lengths-fractional",
            mmsa(setk("train", "audio_lengths", lambda v: np.asarray(v) + 0.5)),
            "split 'train', key 'audio_lengths': np.float64(",
        ),
        (
            "lengths-text",
            mmsa(setk("train", "audio_lengths", lambda v: ["long"] * len(v))),
            "split 'train', key 'audio_lengths': expected whole numbers",
        ),
        (
            "lengths-missing",
            mmsa(lambda o: o["valid"].pop("vision_lengths")),
            "split 'valid' has a different number of steps per modality (text 6, audio 15, "
            "vision 12): unaligned features, but no key 'vision_lengths'",
        ),
        (
            "mmsa-n-mismatch",
            mmsa(setk("train", "vision", lambda x: x[:-1])),
            "split 'train', key 'vision': shape (8, 12, 35) does not match text",
        ),
        (
            "mult-n-mismatch",
            mult(setk("test", "audio", lambda x: x[1:])),
            "split 'test', key 'audio': shape (4, 15, 74) does not match text",
        ),
        (
            "steps-differ-between-splits",
            mult(setk("valid", "vision", lambda x: x[:, 1:])),
            "split 'valid', key 'vision': 11 steps, but 12 in split 'train'",
        ),
        (
            "mmsa-front-padded",
            lambda: (
                {
                    s: {
                        **sp,
                        "audio": _feats(
                            np.random.default_rng(0),
                            len(sp["id"]),
                            "audio",
                            np.asarray(sp["audio_lengths"]),
                            "front",
                        ),
                    }
                    for s, sp in mmsa_unaligned()[0].items()
                },
                "mmsa",
            ),
            "split 'train', key 'audio': the sequences look FRONT-padded",
        ),
    ]


@pytest.mark.parametrize("case,build,message", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_unaligned_files_one_error_naming_split_and_key(tmp_path, store, case, build, message):
    obj, fmt = build()
    path = write_pickle(obj, tmp_path / "bad.pkl")
    with pytest.raises(UserError) as err:
        import_file(path, "x", fmt)
    assert message in str(err.value), str(err.value)
    assert str(path) in str(err.value)
    assert list_datasets(store) == [] and (not store.exists() or not any(store.iterdir()))


# ----------------------------------------------------------------------------- store, CLI


def test_aligned_import_keeps_one_length_for_every_modality(store, mult_file):
    meta = import_file(mult_file, "a")
    assert meta.aligned is True and meta.seq_lens == {m: 7 for m in MODALITIES}
    arrays = load_dataset("a").splits["train"].arrays()
    for m in MODALITIES:
        np.testing.assert_array_equal(arrays[length_key(m)], arrays[LENGTHS])


def test_store_written_before_per_modality_lengths_still_loads(store, mult_file):
    import_file(mult_file, "old")
    d = store / "old"
    meta = json.loads((d / "meta.json").read_text())
    for k in ("seq_lens", "aligned", "mean_lengths", "padding_dropped", "empty_modalities"):
        del meta[k]
    (d / "meta.json").write_text(json.dumps(meta))
    for s in SIZES:
        t = pq.read_table(d / f"{s}.parquet")
        pq.write_table(t.drop([length_key(m) for m in MODALITIES]), d / f"{s}.parquet")
    ds = load_dataset("old")
    assert ds.meta.aligned and ds.meta.seq_lens == {m: 7 for m in MODALITIES}
    arrays = ds.splits["valid"].arrays()
    for m in MODALITIES:
        np.testing.assert_array_equal(arrays[length_key(m)], arrays[LENGTHS])


def test_info_shows_steps_and_mean_valid_length(tmp_path, store, capsys):
    from tune_m3.data.__main__ import main

    obj, lens = mult_noalign()
    assert main(["import", str(write_pickle(obj, tmp_path / "n.pkl")), "--dataset", "n"]) == 0
    capsys.readouterr()
    assert main(["info", "n"]) == 0
    out = capsys.readouterr().out
    assert "steps L: text=6 audio=15 vision=12   UNALIGNED" in out
    total = sum(SIZES.values())
    mean_audio = sum(lens[s]["audio"].sum() for s in SIZES) / total
    assert f"audio={mean_audio:.1f}" in out.split("mean valid:")[1]


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_unaligned_shapes_lengths_padding(store):
    meta = build_synthetic("mosei", scale=0.01, seed=2, unaligned=True)
    assert meta.name == "synth_mosei_unaligned_x0.01" and meta.aligned is False
    L = SynthConfig().seq_len
    assert meta.seq_lens == {m: L * UNALIGNED_STEPS[m] for m in MODALITIES}
    assert meta.seq_lens == {"text": 50, "audio": 150, "vision": 100}
    sp = load_dataset(meta.name).splits["train"]
    arrays = sp.arrays()
    for m in MODALITIES:
        lm = arrays[length_key(m)]
        np.testing.assert_array_equal(lm, arrays[LENGTHS] * UNALIGNED_STEPS[m])
        assert arrays[m].shape[1] == meta.seq_lens[m]
        pad = meta.seq_lens[m] - lm
        for b in range(20):
            assert not arrays[m][b, : pad[b]].any()  # front padding is exactly zero
            assert np.abs(arrays[m][b, pad[b] :]).sum(axis=-1).min() > 0


def test_synthetic_unaligned_keeps_the_signal_and_the_aligned_data_unchanged():
    aligned = generate(SynthConfig(scale=0.05, seed=4))
    unaligned = generate(SynthConfig(scale=0.05, seed=4, unaligned=True))
    a, u = aligned["train"], unaligned["train"]
    np.testing.assert_array_equal(a.labels, u.labels)  # same clips, same labels
    np.testing.assert_array_equal(a.lengths, u.lengths)
    # the aligned default keeps the fingerprint it had before --unaligned existed
    assert SynthConfig().fingerprint() == SynthConfig(unaligned=False).fingerprint()
    assert SynthConfig().fingerprint() != SynthConfig(unaligned=True).fingerprint()
    # audio still carries its cue: time-averaged audio predicts the label better than chance
    y = u.labels
    x = u.features["audio"].sum(axis=1) / u.lengths_of("audio")[:, None]
    X = np.concatenate([x, np.ones((len(y), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert 1 - (y - X @ coef).var() / y.var() > 0.1


def test_missing_unaligned_dataset_says_how_to_build_it(store):
    with pytest.raises(UserError) as err:
        load_dataset("synth_mosei_unaligned")
    assert "python -m tune_m3.data synth --dataset mosei --unaligned" in str(err.value)


def test_cli_synth_unaligned(tmp_path, capsys):
    from tune_m3.data.__main__ import main

    root = tmp_path / "s"
    assert (
        main(
            ["synth", "--dataset", "mosi", "--scale", "0.01", "--unaligned"]
            + ["--data-dir", str(root)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "synth_mosi_unaligned_x0.01  [SYNTHETIC" in out and "UNALIGNED" in out


def test_space_file_builds_the_unaligned_synthetic_set_on_first_use(tmp_path, store):
    """`dataset.synthetic.unaligned: true` in a space file (spaces.SynthSpec, search.check_dataset)."""
    import yaml

    from tune_m3.search.plan import check_dataset
    from tune_m3.search.space import load_space

    path = tmp_path / "u.yaml"
    spec = {"name": "synth_u", "synthetic": {"like": "mosi", "scale": 0.01, "unaligned": True}}
    path.write_text(yaml.safe_dump({"dataset": spec, "search": {"p_mask": {"uniform": [0, 0.3]}}}))
    space = load_space(str(path))
    assert check_dataset(space, None, build=False) is None  # --dry-run builds nothing
    meta = check_dataset(space, None, build=True)
    assert meta.name == "synth_u" and meta.aligned is False
    assert meta.seq_lens == {"text": 50, "audio": 150, "vision": 100}
