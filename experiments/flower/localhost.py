"""A SuperLink and SuperNodes as real processes on localhost (Flower's deployment engine).

What the deployment test and ``benchmarks/deployment_rounds.py`` start; docs/federation.md gives
the same recipe as shell commands for real hosts.

Every process starts in a session of its own; :meth:`LocalDeployment.stop` stops each session and
every process descended from the ones it started (the SuperLink starts its SuperExec in a session
of its own, which starts the ``flwr-serverapp``; SuperNodes start ``flwr-clientapp`` processes).
``FLWR_HOME`` is a folder of the deployment's own: the SuperLink connection ``flwr run`` uses is written
there, and the installed app lives there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
CONNECTION = "fedleak-localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {seconds:.0f} s")


@dataclass
class LocalDeployment:
    """One SuperLink and a SuperNode per ``node_configs`` entry, insecure, on 127.0.0.1."""

    home: Path
    node_configs: list[str]
    link_port: int = field(default_factory=free_port)
    nodes: list[subprocess.Popen] = field(default_factory=list)
    link: subprocess.Popen | None = None
    _tree: set[int] = field(default_factory=set)  # every process below the started ones, when stop began

    @property
    def env(self) -> dict[str, str]:
        # the app runs in this environment: no uv sync of a fresh one, no download
        return {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        }

    def start(self) -> LocalDeployment:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.link_port}"\ninsecure = true\n'
        )
        self.link = self._spawn(
            "link",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--port",
                str(self.link_port),
                "--disable-runtime-dependency-installation",
            ],
        )
        wait_for_port(self.link_port, 60, self.link)
        for i, node_config in enumerate(self.node_configs):
            port = free_port()
            self.nodes.append(
                self._spawn(
                    f"node{i}",
                    [
                        str(BIN / "flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{self.link_port}",
                        "--port",
                        str(port),
                        "--node-config",
                        node_config,
                    ],
                )
            )
            wait_for_port(port, 60, self.nodes[-1])
        return self

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.home / f"{name}.log").open("wb")
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def flwr_run(self, app: Path, run_config: str) -> subprocess.Popen:
        """Start ``flwr run APP <connection> --run-config ... --stream``; its output (text) is piped."""
        return subprocess.Popen(
            [str(BIN / "flwr"), "run", str(app), CONNECTION, "--run-config", run_config, "--stream"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def kill_node(self, i: int) -> None:
        """Kill SuperNode ``i`` and the ClientApp it runs, as a crashed host would."""
        _kill(self.nodes[i], signal.SIGKILL)

    @property
    def started(self) -> list[subprocess.Popen]:
        return [*self.nodes, *([self.link] if self.link is not None else [])]

    def stop(self) -> None:
        """Stop every process this deployment started, and everything they started."""
        self._tree = _descendants({p.pid for p in self.started})
        for pid in self._tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for proc in self.started:
            _kill(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            proc.wait(timeout=15)

    def alive(self) -> list[int]:
        """Process ids, still running, of what this deployment started (and of their descendants,
        as found when :meth:`stop` began)."""
        roots = {p.pid for p in self.started}
        table = _process_table()
        known = roots | self._tree | _descendants(roots, table)
        return sorted(
            pid for pid, (_, sid, stat) in table.items() if (pid in known or sid in roots) and not stat.startswith("Z")
        )


def _process_table() -> dict[int, tuple[int, int, str]]:
    """``pid -> (ppid, sid, state)`` of every process (``ps``)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,sid=,stat="], capture_output=True, text=True).stdout
    return {int(f[0]): (int(f[1]), int(f[2]), f[3]) for f in (line.split() for line in out.splitlines()) if len(f) == 4}


def _descendants(roots: set[int], table: dict[int, tuple[int, int, str]] | None = None) -> set[int]:
    """Every process below ``roots`` in the parent tree (the roots included)."""
    table = _process_table() if table is None else table
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _kill(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
