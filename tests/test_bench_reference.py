"""bench_step.py --reference: the two sides alternate over a pipe and the ratio is printed.

A stand-in for the authors' checkout (a tiny ``modules/baseline.py`` with their class name and
call signature) keeps the test independent of their code, which is never in this repository.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STAND_IN = """
import torch
from torch import nn

print("a banner on stdout, as a logger might print")  # must not break the pipe protocol


class AudioVisualTextMaskedClassifier(nn.Module):
    def __init__(self, feature_sizes, num_classes, **kwargs):
        super().__init__()
        assert set(feature_sizes) == {"text", "audio", "visual"}
        self.lin = nn.Linear(sum(feature_sizes.values()), num_classes)

    def forward(self, inputs, lengths):
        assert set(lengths) == {"text"}
        x = torch.cat([inputs[k] for k in ("text", "audio", "visual")], dim=-1)
        return self.lin(x.mean(1))  # (B, 1), like theirs
"""


def _bench(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "bench/bench_step.py", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_reference_alternates_and_prints_the_ratio(tmp_path):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "baseline.py").write_text(STAND_IN)
    out = _bench(
        "--reference",
        str(tmp_path),
        "--reference-python",
        sys.executable,
        "--steps",
        "1",
        "--rounds",
        "2",
        "--batch",
        "4",
        "--seq-len",
        "5",
    )
    assert out.returncode == 0, out.stderr
    assert "[authors' code] a banner on stdout" in out.stderr
    assert len(re.findall(r"round \d: ours [\d.]+, authors [\d.]+ samples/s", out.stdout)) == 2
    line = out.stdout.strip().splitlines()[-1]
    assert "(1,633,801 params)" in line  # ours at MOSEI dims
    assert "(410 params" in line  # the stand-in: 409 weights + 1 bias
    assert re.search(r"ratio \d+\.\d\d \(per round: [\d.]+, [\d.]+\)", line)


def test_reference_refuses_a_folder_without_the_authors_code(tmp_path):
    out = _bench("--reference", str(tmp_path), "--reference-python", sys.executable, "--steps", "1")
    assert out.returncode != 0
    assert "no modules/baseline.py there" in out.stderr


def test_reference_refuses_other_models_and_length_modes():
    for extra in (["--model", "mult"], ["--lengths", "bucketed"], ["--amp", "bf16"]):
        out = _bench("--reference", "x", *extra)
        assert out.returncode == 2 and "--reference" in out.stderr.splitlines()[-1]
