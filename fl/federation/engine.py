"""Run a federation through Flower's simulation engine (Ray backend), reusing one Ray instance.

``flwr.simulation.run_simulation`` starts Ray when it is not running and its Ray backend
calls ``ray.shutdown()`` when the run ends, so every call pays Ray's start-up (docs/federation.md).
Inside :func:`ray_session` Ray is started once; the backend's ``terminate`` then stops only
its actors, and the session shuts Ray down on exit, so consecutive federations (an
experiment grid) pay the start-up once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fl.federation.server import FederationServer


def make_server_app(server: FederationServer) -> ServerApp:
    """A ServerApp whose ``main`` runs ``server``'s round loop (the result stays on ``server``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        server.run(grid)

    return app


def quiet_flower(*, verbose: bool) -> None:
    """Flower sets its logger to DEBUG on import and propagates to the root: errors only unless verbose."""
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    flwr_logger.propagate = False
    for name in ("ray", "alembic"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning, module="ray")


def backend_config(*, client_cpus: float, client_gpus: float, verbose: bool) -> dict[str, Any]:
    """Resources per client actor and Ray's own logging (quiet unless verbose)."""
    return {
        "client_resources": {"num_cpus": client_cpus, "num_gpus": client_gpus},
        "init_args": ray_init_args(verbose=verbose),
    }


def ray_init_args(*, verbose: bool) -> dict[str, Any]:
    return {
        "logging_level": "INFO" if verbose else "ERROR",
        "log_to_driver": verbose,
        "include_dashboard": False,
        "configure_logging": True,
    }


@dataclass
class _Session:
    """The open ``ray_session``: Ray starts at its first simulation, not at ``with`` entry."""

    verbose: bool
    depth: int = 1
    owns_ray: bool = False


_SESSION: _Session | None = None


@contextlib.contextmanager
def ray_session(*, verbose: bool = False) -> Iterator[None]:
    """Keep one Ray instance alive for every simulation run inside the ``with`` block.

    Ray is started lazily by the first :func:`simulate` inside the block, so a run refused
    while it is being composed (bad model for the defense, bad data) never starts Ray.
    """
    global _SESSION
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    quiet_flower(verbose=verbose)  # before the import below, which logs alembic's plugin setup
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    if _SESSION is not None:
        _SESSION.depth += 1
        try:
            yield
        finally:
            _SESSION.depth -= 1
        return
    original = RayBackend.terminate

    def terminate_actors_only(self: RayBackend) -> None:
        if self.pool:
            self.pool.terminate_all_actors()

    RayBackend.terminate = terminate_actors_only  # type: ignore[method-assign]  # patched for the session, restored below
    _SESSION = _Session(verbose=verbose)
    try:
        yield
    finally:
        owns, _SESSION = _SESSION.owns_ray, None
        RayBackend.terminate = original  # type: ignore[method-assign]  # undo the patch
        if owns:
            import ray

            ray.shutdown()


def _start_session_ray(session: _Session) -> None:
    """Start the session's Ray instance (once), with this process's import path for the workers."""
    import ray

    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join(sys.path)
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **ray_init_args(verbose=session.verbose))
    session.owns_ray = True


def simulate(
    server: FederationServer,
    client_app: ClientApp,
    *,
    num_clients: int,
    client_cpus: float = 1.0,
    client_gpus: float = 0.0,
    verbose: bool = False,
) -> None:
    """Run ``server`` against ``num_clients`` virtual clients with Flower's Ray simulation engine."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from flwr.simulation import run_simulation

    quiet_flower(verbose=verbose)
    if _SESSION is not None:
        _start_session_ray(_SESSION)
    run_simulation(
        server_app=make_server_app(server),
        client_app=client_app,
        num_supernodes=num_clients,
        backend_config=backend_config(client_cpus=client_cpus, client_gpus=client_gpus, verbose=verbose),
        verbose_logging=verbose,
    )
