"""A Spark standalone cluster (one master, one worker) on loopback, from pyspark's own
``bin/spark-class``: no download, Java 17 from the system. For tests and benchmarks.

Both daemons authenticate (``spark.authenticate`` with a fresh secret) and encrypt RPC
(``spark.network.crypto.enabled``), as a production cluster must; the driver adds I/O
encryption. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SparkCluster", "java_available", "start_cluster"]


def java_available() -> bool:
    return shutil.which("java") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkCluster:
    """A running master and worker; :meth:`stop` ends both and removes their files."""

    master_url: str
    secret: str
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def driver_conf(self) -> dict[str, str]:
        """What the pprl worker needs in ``PPRL_SPARK_CONF`` to join this cluster."""
        return {
            "spark.authenticate": "true",
            "spark.authenticate.secret": self.secret,
            "spark.network.crypto.enabled": "true",
            "spark.io.encryption.enabled": "true",
            "spark.driver.memory": "1g",
            "spark.executor.memory": "1g",
            "spark.cores.max": "2",
        }

    def log_tail(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-1500:] for p in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(root: Path, *, worker_memory: str = "2g", cores: int = 2,
                  timeout: float = 90.0) -> SparkCluster:  # fmt: skip
    """Start a master and a worker under ``root`` and wait until the worker registered."""
    root.mkdir(parents=True, exist_ok=True)
    home = _spark_home()
    secret = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(root),
        "SPARK_WORKER_DIR": str(root / "work"),
        "SPARK_LOCAL_DIRS": str(root / "local"),
        "SPARK_DAEMON_JAVA_OPTS": " ".join(
            [
                "-Dspark.authenticate=true",
                f"-Dspark.authenticate.secret={secret}",
                "-Dspark.network.crypto.enabled=true",
                "-Dspark.ui.enabled=false",
            ]
        ),  # fmt: skip
    }
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", secret, root)
    spark_class = str(home / "bin" / "spark-class")
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                   "--port", str(port), "--webui-port", str(_free_port())],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url,
                   "--host", "127.0.0.1", "--port", str(_free_port()), "--webui-port",
                   str(_free_port()), "--cores", str(cores), "--memory", worker_memory,
                   "--work-dir", str(root / "work")],
    }  # fmt: skip
    try:
        for name, command in commands.items():
            with (root / f"{name}.log").open("wb") as log:
                cluster.processes.append(subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends the JVM too
                    preexec_fn=_die_with_parent,  # a killed test run leaves no daemon behind
                ))  # fmt: skip
            if name == "master":
                _wait_for(lambda: _listening(port), timeout, cluster, "the master to listen")
        _wait_for(lambda: "Successfully registered with master" in
                  (root / "worker.log").read_text(errors="replace"),
                  timeout, cluster, "the worker to register")  # fmt: skip
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _die_with_parent() -> None:
    """SIGTERM this child when the process that started it dies (kept across the exec of
    spark-class into java)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(check: object, timeout: float, cluster: SparkCluster, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        for proc in cluster.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"a Spark daemon exited while waiting for {what}:\n"
                                   f"{cluster.log_tail()}")  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}:\n{cluster.log_tail()}")
        time.sleep(0.3)


def shut_down_local_jvm() -> None:
    """End the Py4J gateway JVM this test process launched for a local Spark session.

    ``SparkSession.stop()`` stops the context but keeps the JVM for the process's life.
    A child forked later would inherit the gateway and talk to this process's JVM over a
    copied socket, and tests that check for leftover children would see it, so tests that
    start Spark in-process shut it down when they are done."""
    import sys

    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    finally:
        SparkContext._gateway = None
        SparkContext._jvm = None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=30)
