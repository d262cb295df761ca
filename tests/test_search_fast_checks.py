"""The search's cheap checks run before torch is imported; the dry run never times kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# runs the search CLI in this process, then says whether torch was imported
PROBE = (
    "import sys; from tune_m3.search import main; rc = main(sys.argv[1:]); "
    "print('rc', rc, 'torch', 'torch' in sys.modules)"
)


def _search(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TUNE_M3_DATA_DIR": str(tmp_path / "data"),  # an empty store
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TUNE_M3_RESULTS": str(tmp_path / "results"),
    }
    env.pop("TUNE_M3_CPU_LINEAR", None)
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_data_ends_before_torch_loads(tmp_path):
    out = _search(tmp_path, "--space", "m3_grid_mosei", "--dataset", "nosuch")
    assert out.stdout.strip() == "rc 2 torch False", out.stderr
    assert out.stderr.startswith("error: dataset 'nosuch' is not in the store")


def test_dry_run_checks_the_models_without_timing_kernels(tmp_path):
    out = _search(tmp_path, "--space", "m3_grid_mosei", "--dry-run")
    assert out.stdout.strip().endswith("rc 0 torch True"), out.stderr  # the model check ran
    assert not (tmp_path / "cache" / "tune_m3" / "cpu_linear.json").exists()
