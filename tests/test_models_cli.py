"""``python -m tune_m3.models``: the built-ins, the MMSA zoo (or how to install it), the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tune_m3.models import mmsa
from tune_m3.models.seam import BUILTINS

REPO = Path(__file__).resolve().parent.parent


def _have_mmsa() -> bool:
    try:
        import MMSA  # noqa: F401
    except ImportError:
        return False
    return True


def _models_cli(pythonpath_first: Path | None = None) -> str:
    """stdout of ``python -m tune_m3.models`` (exit 0 asserted), 1 thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = [str(REPO), env.get("PYTHONPATH", "")]
    if pythonpath_first is not None:
        paths.insert(0, str(pythonpath_first))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    out = subprocess.run(
        [sys.executable, "-m", "tune_m3.models"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return out.stdout


def _refusals(stdout: str) -> None:
    for name in [*mmsa.NEEDS_BERT, *mmsa.SINGLE_TASK]:
        if name not in mmsa.ADAPTERS:
            assert f"  mmsa:{name}: " in stdout
    assert "mmsa:MISA: needs pretrained BERT weights, downloaded at run time: its text" in stdout
    assert "mmsa:MTFN: multi-task" in stdout and "use mmsa:TFN" in stdout


@pytest.mark.skipif(not _have_mmsa(), reason="the mmsa extra is not installed")
def test_lists_the_built_ins_and_the_zoo():
    stdout = _models_cli()
    for name in BUILTINS:
        assert f"\n{name} (" in f"\n{stdout}"
    assert "parameters at CMU-MOSEI dims (300, 74, 35): 1,633,801" in stdout  # m3_baseline
    for name in mmsa.ADAPTERS:
        assert f"\nmmsa:{name} (tune_m3.models.mmsa." in stdout
    tfn = stdout[stdout.index("\nmmsa:TFN (") :]
    assert "default augment_at: text=model.text_subnet,audio=model.audio_subnet" in tfn
    assert f"parameters at CMU-MOSEI dims (300, 74, 35): {_tfn_mosei():,}" in tfn
    assert "not installed" not in stdout
    _refusals(stdout)


def _tfn_mosei() -> int:
    return mmsa.parameter_count("mmsa:TFN", {"text": 300, "audio": 74, "vision": 35})


def test_without_the_extra_one_line_says_how_to_install_it(tmp_path: Path):
    """Where MMSA cannot be imported: the built-ins, one install line, the refusals; exit 0."""
    fake = tmp_path / "MMSA"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'MMSA'\")\n")
    stdout = _models_cli(pythonpath_first=tmp_path)
    for name in BUILTINS:
        assert f"\n{name} (" in f"\n{stdout}"
    install = [line for line in stdout.splitlines() if "not installed" in line]
    assert install == [f"MMSA zoo (mmsa:<Model>): not installed; install the extra: {mmsa.INSTALL}"]
    assert "\nmmsa:TFN (" not in stdout
    _refusals(stdout)
