"""The one vocabulary (tune_m3/names.py): builder and parser agree, and nothing else defines it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tune_m3.names import (
    MODALITIES,
    diag_auc_key,
    diag_key,
    parse_diag_key,
    pct,
)
from tune_m3.padding import valid_mask

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("split", ["test", "val"])
@pytest.mark.parametrize("metric", ["corr", "f1", "mae", "acc2_has0", "f1_has0"])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.125, 0.3, 1.0])
@pytest.mark.parametrize("drop", [False, True])
def test_diag_key_round_trip(split, metric, fraction, drop):
    k = diag_key("text", "noisy", fraction, metric, split=split, drop=drop)
    d = parse_diag_key(k)
    assert d is not None
    assert (d.split, d.modality, d.kind, d.metric, d.drop) == (split, "text", "noisy", metric, drop)
    assert d.fraction == pytest.approx(fraction)
    assert d.key() == k


def test_known_spellings():
    assert (
        diag_key("text", "missing", 0.3, "corr", drop=True) == "diag_test_text_missing_30_corr_drop"
    )
    assert diag_auc_key("audio", "noisy", "f1") == "diag_test_audio_noisy_auc_f1"
    assert pct(0.05) == "5" and pct(0.125) == "12.5"
    d = parse_diag_key("diag_test_audio_noisy_auc_f1")
    assert d is not None and d.is_auc and d.fraction is None and d.metric == "f1"


@pytest.mark.parametrize(
    "key",
    [
        "test_mae",
        "diag_",
        "diag_test_text",
        "diag_train_text_missing_30_corr",
        "diag_test_text_gone_30_corr",
        "diag_test_text_missing_x_corr",
    ],
)
def test_parser_refuses_other_keys(key):
    assert parse_diag_key(key) is None


def test_valid_mask_numpy_and_torch_agree():
    lengths = np.array([0, 1, 3, 5, 7])
    m_np = valid_mask(lengths, 5)
    m_t = valid_mask(torch.as_tensor(lengths), 5)
    assert isinstance(m_np, np.ndarray) and isinstance(m_t, torch.Tensor)
    assert (m_np == m_t.numpy()).all()
    assert m_np.sum(1).tolist() == [0, 1, 3, 5, 5]
    assert m_np[2].tolist() == [False, False, True, True, True]  # front padding


def _grep(pattern: str) -> list[str]:
    out = subprocess.run(
        ["git", "grep", "-nE", pattern, "--", "tune_m3", "analysis", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return [ln for ln in out.stdout.splitlines() if not ln.startswith("tune_m3/names.py")]


def test_modality_tuple_defined_once():
    assert MODALITIES == ("text", "audio", "vision")
    assert _grep(r"""\(["']text["'], ["']audio["'], ["']vision["']\)""") == []


def _names_a_module(hit: str) -> bool:
    """``"tune_m3.search"`` in a command line names a module, not a tag."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in re.findall(r"""["'](tune_m3\.[a-z_]+)["']""", hit)
    )


def test_tag_keys_defined_once():
    hits = [h for h in _grep(r"""["']tune_m3\.[a-z_]+["']""") if not _names_a_module(h)]
    assert hits == [], "MLflow tag keys belong in tune_m3/names.py:\n" + "\n".join(hits)


def test_diag_key_not_built_or_parsed_elsewhere():
    hits = _grep(r"""f["']diag_(test|val)_\{|split\(["']_["']\)\[""")
    assert hits == [], "\n".join(hits)
