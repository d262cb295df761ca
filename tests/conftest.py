"""Shared fixtures: tiny feature files in the exact published layouts, a temporary store."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

# Tests never touch the user's store, MLflow or Ray results.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

DIMS = {"mosei": (300, 74, 35), "mosi": (300, 5, 20)}


def make_split(rng: np.random.Generator, n: int, L: int, dims, fmt: str) -> dict:
    """One split of a feature file, front-padded, in the MulT or MMSA layout."""
    lengths = rng.integers(2, L + 1, size=n)
    valid = np.arange(L)[None, :] >= (L - lengths[:, None])  # (n, L)
    feats = {
        m: (rng.standard_normal((n, L, d)).astype(np.float32) * valid[..., None])
        for m, d in zip(("text", "audio", "vision"), dims, strict=True)
    }
    labels = np.round(rng.uniform(-3, 3, size=n) * 3) / 3
    ids = np.array([f"vid{i}" for i in range(n)])
    if fmt == "mult":
        return {**feats, "labels": labels.reshape(n, 1, 1).astype(np.float32), "id": ids}
    return {
        **feats,
        "regression_labels": labels.astype(np.float32),
        "id": ids,
        "raw_text": np.array(["some words"] * n),
        "audio_lengths": lengths.tolist(),
        "vision_lengths": lengths.tolist(),
        "text_bert": np.zeros((n, 3, L), np.float32),
    }


def make_feature_obj(
    fmt: str = "mult", like: str = "mosei", L: int = 7, seed: int = 0, n=(9, 4, 5)
):
    rng = np.random.default_rng(seed)
    return {
        s: make_split(rng, k, L, DIMS[like], fmt)
        for s, k in zip(("train", "valid", "test"), n, strict=True)
    }


def write_pickle(obj, path: Path) -> Path:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    """An empty dataset store, also set as $TUNE_M3_DATA_DIR."""
    root = tmp_path / "store"
    monkeypatch.setenv("TUNE_M3_DATA_DIR", str(root))
    return root


@pytest.fixture
def mult_file(tmp_path: Path) -> Path:
    return write_pickle(make_feature_obj("mult"), tmp_path / "mosei_senti_data.pkl")


@pytest.fixture
def mmsa_file(tmp_path: Path) -> Path:
    return write_pickle(make_feature_obj("mmsa"), tmp_path / "aligned_50.pkl")


def tiny_arrays(n=(64, 32, 48), L=10, dims=(8, 4, 3), seed=0) -> dict:
    """Tiny train/valid/test arrays with a learnable signal (text-dominant), in store layout."""
    from tune_m3.data.formats import valid_lengths

    rng = np.random.default_rng(seed)
    out = {}
    for split, k in zip(("train", "valid", "test"), n, strict=True):
        s = rng.standard_normal(k)
        u = rng.standard_normal(k)
        lengths = rng.integers(3, L + 1, size=k)
        valid = (np.arange(L)[None, :] >= (L - lengths[:, None]))[..., None]
        feats = {}
        for m, d, sig in zip(("text", "audio", "vision"), dims, (s, u, 0 * u), strict=True):
            x = rng.standard_normal((k, L, d)) * 0.3
            x[..., 0] += sig[:, None]
            feats[m] = (x * valid).astype(np.float32)
        labels = np.clip(np.round((1.2 * s + 0.4 * u) * 3) / 3, -3, 3).astype(np.float32)
        out[split] = {**feats, "labels": labels, "lengths": valid_lengths(feats)}
    return out


TINY_MODEL = {"hidden": 8, "proj": 8, "batch_size": 16, "threads": 1}


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation, and on a busy 2-core machine
    spinning worker threads make small LSTMs 10x slower. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def searches():
    """Start ``tune_m3.search`` runs (``searchutil.Search``) that are killed after the test."""
    from searchutil import Search  # searchutil imports this module: import it late

    started: list = []
    yield lambda env, *args: started.append(Search(env, *args)) or started[-1]
    for s in started:  # a failed assertion must not leave a search (and its Ray) running
        s.kill()
