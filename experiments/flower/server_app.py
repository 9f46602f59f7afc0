"""ServerApp of the Flower App: the curious server of ``fedleak simulate`` under ``flwr run .``."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from experiments.federated.run import make_server
from experiments.flower.task import composition, config_from_run_config
from fl.device import resolve_device
from fl.runs import init_run_dir

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config into its ``out`` directory."""
    run_config = dict(context.run_config)
    cfg = config_from_run_config(run_config)
    out = Path(str(run_config.get("out", "runs/flwr")))
    device = resolve_device(str(run_config.get("device", "cpu")))
    init_run_dir(out, config=cfg.to_dict(), seed=cfg.seed, device=device)
    comp = composition(tuple(sorted(run_config.items())))
    make_server(cfg, comp, out=out, device=device).run(grid)
