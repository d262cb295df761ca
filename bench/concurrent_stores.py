"""MLflow tracking backends for bench_concurrent_searches: start one, query it, stop it.

Three kinds, each a fresh, empty store per call of :func:`open_store`:

- ``sqlite``: the local SQLite file every search opens itself (``sqlite:///DIR/results/mlflow.db``,
  what a search gets by default in its results folder DIR/results); no server.
- ``server_sqlite``: ``mlflow server`` on 127.0.0.1 (a free port, MLflow's default 4 uvicorn
  workers) over a SQLite file; searches talk HTTP to it.
- ``server_pg``: the same server over PostgreSQL: a throwaway cluster (:class:`PgCluster`,
  ``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``, 127.0.0.1 on a free port, its
  socket in a temp dir, trust auth, run as the ``postgres`` user when we are root), one new
  database per store, as ``postgresql+psycopg2://``: SQLAlchemy 2.1 maps a bare ``postgresql://``
  to psycopg 3, not installed here. MLflow needs ``psycopg2-binary`` for it (bench-only).

Every process started here is ours and is stopped by its pid (the server's process group, which
it leads: ``start_new_session``; the cluster by ``pg_ctl stop``). Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("sqlite", "server_sqlite", "server_pg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster in a temp dir, on 127.0.0.1:``port``; see module doc."""

    bindir: Path
    root: Path
    port: int = 0
    user: str = "mlflow"
    dbs: int = 0

    @staticmethod
    def find_bindir() -> Path | None:
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
        return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None

    def _as_owner(self, *cmd: str) -> list[str]:
        """initdb and the server refuse to run as root: run them as ``postgres`` then."""
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data, self.port = self.root / "data", free_port()
        init = [str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust"]
        subprocess.run(self._as_owner(*init, "-E", "UTF8"), check=True, capture_output=True)
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        ctl = [str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w"]
        subprocess.run(self._as_owner(*ctl, "-o", opts, "start"), check=True, capture_output=True)

    def cpu_s(self) -> float:
        """CPU seconds of the postmaster and its live backends so far (exited ones not counted;
        MLflow's pooled connections live as long as the server)."""

        pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        return tree_cpu_s(pid) or 0.0

    def new_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        self.dbs += 1
        name = f"mlflow{self.dbs}"
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        subprocess.run([str(self.bindir / "createdb"), *where, name], check=True)
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w"]
        subprocess.run(self._as_owner(*ctl, "stop"), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` and its live descendants so far; None when
    it is gone (a descendant that exits meanwhile is skipped)."""
    import psutil

    try:
        me = psutil.Process(pid)
        procs = [me, *me.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


@dataclass
class Store:
    """One fresh tracking store: the URI searches get, how to query its tables, how to stop it."""

    kind: str
    uri: str
    backend_uri: str  # the database itself (sqlite:///... or postgresql://...)
    server: subprocess.Popen | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    def query(self, sql: str) -> list[tuple]:
        if self.backend_uri.startswith("sqlite:///"):
            con = sqlite3.connect(self.backend_uri.removeprefix("sqlite:///"), timeout=60)
        else:
            import psycopg2

            con = psycopg2.connect(self.backend_uri.replace("+psycopg2", "", 1))
        try:
            cur = con.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            con.close()

    def server_cpu_s(self) -> float | None:
        """CPU seconds (user + system) of the server and its workers so far; None: no server."""
        return None if self.server is None else tree_cpu_s(self.server.pid)

    def server_procs(self) -> int:
        import psutil

        try:
            return 1 + len(psutil.Process(self.server.pid).children(recursive=True))
        except (psutil.Error, AttributeError):
            return 0

    def close(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)  # the group our server leads
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()


def start_server(backend_uri: str, work: Path, jobs: bool = True) -> Store:
    """``mlflow server`` on 127.0.0.1 over ``backend_uri``; returns once /health answers and it
    idles (:func:`warm_up`). ``jobs=False``: ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (MLflow
    3 then starts no huey job consumers beside its uvicorn workers)."""
    port = free_port()
    log = work / f"mlflow_server_{port}.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", backend_uri, "--artifacts-destination", str(work / "artifacts")]
    with open(log, "w") as out:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": str(jobs).lower()}
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    kind = "server_pg" if backend_uri.startswith("postgresql") else "server_sqlite"
    store = Store(kind, uri, backend_uri, proc, log)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 180:
        if proc.poll() is not None:
            sys.exit(f"mlflow server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=5) as r:
                r.read()
            store.extra["server_start_s"] = time.perf_counter() - t0
            store.extra["server_settle_s"] = warm_up(store)
            return store
        except OSError:
            time.sleep(1)
    store.close()
    sys.exit(f"mlflow server did not answer /health in 180 s:\n{log.read_text()[-3000:]}")


def warm_up(store: Store, quiet_cpu: float = 0.3, limit: float = 30.0) -> float:
    """Let every server worker build its store (each does on its first request: engine, schema
    check) and wait until the server idles (< ``quiet_cpu`` CPU-s per s); the seconds it took.
    A team server has long done this; a search should not pay for it here."""
    from concurrent.futures import ThreadPoolExecutor

    url = store.uri + "/api/2.0/mlflow/experiments/search?max_results=1"

    def get(_: int) -> None:
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(get, range(32)))
    last = store.server_cpu_s() or 0.0
    while time.perf_counter() - t0 < limit:
        time.sleep(1.0)
        now = store.server_cpu_s() or 0.0
        if now - last < quiet_cpu:
            break
        last = now
    return time.perf_counter() - t0


def open_store(kind: str, work: Path, pg: PgCluster | None, jobs: bool = True) -> Store:
    """A fresh, empty store of ``kind`` under ``work`` (a new folder per call)."""
    work.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":  # where a search puts it by default: in its results folder
        (work / "results").mkdir(exist_ok=True)
        uri = f"sqlite:///{work / 'results' / 'mlflow.db'}"
        return Store(kind, uri, uri)
    if kind == "server_sqlite":
        return start_server(f"sqlite:///{work / 'server_mlflow.db'}", work, jobs)
    if pg is None:
        raise ValueError("server_pg needs a PgCluster")
    return start_server(pg.new_database(), work, jobs)


def start_pg() -> tuple[PgCluster | None, str]:
    """Start the throwaway cluster; (None, why) when PostgreSQL or psycopg2 is missing."""
    bindir = PgCluster.find_bindir()
    if bindir is None:
        return None, "no /usr/lib/postgresql/*/bin/initdb (apt-get install -y postgresql)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return None, "psycopg2 missing (pip install psycopg2-binary; a bench-only dependency)"
    # its own folder under /tmp: the bench's work dir is 0700 root, closed to ``postgres``
    pg = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="bench_pg_")))
    try:
        pg.start()
    except subprocess.CalledProcessError as err:
        return None, f"PostgreSQL did not start: {err.stderr.decode()[-500:]}"
    return pg, ""
