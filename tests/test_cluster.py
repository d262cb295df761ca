"""A real two-node Ray cluster on loopback, with token authentication on, and a search against it.

The test starts both nodes itself (``ray start``), with a token of its own in a temp directory
(``RAY_AUTH_TOKEN_PATH``, so the user's ``~/.ray/auth_token`` is never touched), and stops
exactly the processes it started, by process id.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from searchutil import TINY_FIXED, kill_tree, make_search_env, mlflow_runs, run_search

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _our_ray_pids(temp_dir: str) -> list[int]:
    """Processes of the cluster this test started: their command line names its temp dir."""
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(temp_dir in part for part in (p.info["cmdline"] or [])):
                pids.append(p.info["pid"])
    return pids


@pytest.fixture
def cluster(tmp_path):
    e2e_env = make_search_env(tmp_path / "search")
    temp_dir = tempfile.mkdtemp(
        prefix="rt", dir="/tmp"
    )  # short: Ray's socket paths must be < 108 chars
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {
        **e2e_env,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = _free_port()
    common = ["--temp-dir", temp_dir, "--disable-usage-stats", "--include-dashboard=false"]
    try:
        head = subprocess.run(
            [
                RAY,
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=1",
                '--resources={"node_a": 1}',
                *common,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert head.returncode == 0, head.stdout + head.stderr
        worker = subprocess.run(
            [
                RAY,
                "start",
                f"--address=127.0.0.1:{port}",
                "--num-cpus=1",
                '--resources={"node_b": 1}',
                "--temp-dir",
                temp_dir,
                "--disable-usage-stats",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield {"env": env, "address": f"127.0.0.1:{port}", "temp_dir": temp_dir}
    finally:
        pids = _our_ray_pids(temp_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and any(psutil.pid_exists(p) for p in pids):
            time.sleep(0.5)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_search_on_two_node_cluster_uses_both_nodes(cluster, tmp_path):
    env = cluster["env"]
    space = tmp_path / "cluster.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "tiny"},
                "fixed": {**TINY_FIXED, "scheme": "m3", "max_epochs": 2},
                "search": {"p_mask": {"grid": [0.1, 0.2, 0.3, 0.4]}},
                "algorithm": {"type": "grid"},
                "scheduler": {"type": "fifo"},
                "max_concurrent": 2,
                "resources": {"cpu": 1},
            }
        )
    )
    out = run_search(
        env, "--space", str(space), "--address", cluster["address"], "--experiment", "e2e_cluster"
    )
    assert "best configuration:" in out.stdout

    # both nodes are in the cluster, and trials ran on both of them
    status = subprocess.run(
        [RAY, "status", f"--address={cluster['address']}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "node_a" in status.stdout and "node_b" in status.stdout, status.stdout + status.stderr
    c, parents, children = mlflow_runs(env, "e2e_cluster")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    nodes = {r.data.tags["tune_m3.node_id"] for r in children}
    assert len(nodes) == 2, nodes
    for r in children:  # complete results: every epoch and the final test metrics
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val_mae")] == [1, 2]
        assert "test_mae" in r.data.metrics
    # checkpoints and the results table are in the storage
    exp_dir = next((Path(env["TUNE_M3_RESULTS"]) / "ray").glob("cluster-*"))
    assert len(list(exp_dir.glob("run_trial_*/checkpoint_*"))) >= 4
    assert (exp_dir / "trials.parquet").is_file()


def test_unauthenticated_driver_is_refused(cluster):
    """Token auth is really on: a driver with the wrong token cannot join."""
    bad = Path(cluster["temp_dir"]) / "wrong_token"
    bad.write_text(secrets.token_hex(32))
    env = {**cluster["env"], "RAY_AUTH_TOKEN_PATH": str(bad)}
    code = f"import ray; ray.init(address='{cluster['address']}', _node_ip_address='127.0.0.1')"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode != 0, out
        assert "Unauthenticated" in out or "InvalidAuthToken" in out or "auth" in out.lower()
    except subprocess.TimeoutExpired:
        # still retrying after 90 s means it never got in: refused, which is what we test
        kill_tree(proc.pid)
        proc.communicate()
