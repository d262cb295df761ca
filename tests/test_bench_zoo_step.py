"""bench_zoo_step.py: plain MMSA, the seam and the seam with M3 alternate; one JSON written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = dict(
    os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
)


def _have_mmsa() -> bool:
    try:
        import MMSA  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_mmsa(), reason="the mmsa extra is not installed")
def test_zoo_step_bench_alternates_the_sides_and_writes_json(tmp_path: Path):
    out_json = tmp_path / "zoo.json"
    cmd = [sys.executable, "bench/bench_zoo_step.py", "--models", "mmsa:LMF", "--batch", "4"]
    cmd += ["--seq-len", "6", "--steps", "1", "--rounds", "2", "--control", "--split"]
    out = subprocess.run(
        [*cmd, "--json", str(out_json)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "by CPU time: plain" in out.stdout and "seam" in out.stdout
    res = json.loads(out_json.read_text())
    assert res["machine"]["vector"] in ("AVX-512", "AVX2", "other")
    lmf = res["models"]["mmsa:LMF"]
    assert set(lmf["rates"]) == {"plain", "plain_b", "adapter", "wrapped", "seam", "m3"}
    assert all(len(v) == 2 for v in lmf["cpu_rates"].values())  # round 0 not counted
    assert set(lmf["overhead"]) == {"plain_b", "adapter", "wrapped", "seam", "m3"}


def test_steps_per_model_must_match_the_models():
    cmd = [sys.executable, "bench/bench_zoo_step.py", "--models", "mmsa:TFN,mmsa:LMF"]
    out = subprocess.run(
        [*cmd, "--steps", "1,2,3"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "--steps" in out.stderr
