"""ServerApp of the Flower App: the curious server of ``fedleak simulate`` under ``flwr run .``."""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from experiments.federated.federation import make_server, round_line, summarise
from experiments.flower.run_config import app_out, composition, config_from_run_config
from fl.core.runs import init_run_dir
from fl.device import resolve_device

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config into its ``out`` directory.

    Each round's line (accuracy, loss, epsilon, attack PSNR) goes to Flower's log, which
    ``flwr run . --stream`` shows; ``out/result.json`` holds the final metrics, as after
    ``fedleak simulate``.
    """
    start = time.perf_counter()
    run_config = dict(context.run_config)
    cfg = config_from_run_config(run_config)
    out = app_out(run_config)
    device = resolve_device(str(run_config.get("device", "cpu")))
    init_run_dir(out, config=cfg.server_dict(), seed=cfg.seed, device=device)
    comp = composition(tuple(sorted(run_config.items())))

    def report(record: dict[str, Any]) -> None:
        log(INFO, "%s", round_line("fedleak", record, cfg.rounds))

    ckpt = make_server(cfg, comp, out=out, device=device, progress=report).run(grid)
    result = summarise(cfg, ckpt, out, time.perf_counter() - start)
    log(INFO, "fedleak: final accuracy %.4f after %d rounds -> %s", result.final_accuracy, result.rounds_done, out)
