"""Per-round checkpoints: the global model plus everything a resumed run needs to continue identically.

``RUN_DIR/checkpoint/global_0003.safetensors`` holds the weights after round 3 and
``RUN_DIR/checkpoint/state.json`` (written last: the commit point) the round number, the
per-round history and the server-side defense state (e.g. the central DP accountant). The
clients' own state (keys, accountants) is theirs, kept on their side (:mod:`fl.federation.client_side`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fl.core.errors import DataError
from fl.core.runs import atomic_write_json, load_tensors, read_json, save_tensors


@dataclass
class Checkpoint:
    """Server state after ``server_round`` (0 = nothing trained yet)."""

    server_round: int = 0
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    defense_state: dict[str, Any] = field(default_factory=dict)

    def save(self, run_dir: str | Path) -> None:
        root = Path(run_dir) / "checkpoint"
        name = f"global_{self.server_round:04d}.safetensors"
        save_tensors(root / name, self.weights)
        atomic_write_json(
            root / "state.json",
            {
                "weights": name,
                "round": self.server_round,
                "history": self.history,
                "defense_state": self.defense_state,
            },
        )
        for old in root.glob("global_*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, run_dir: str | Path) -> Checkpoint:
        root = Path(run_dir) / "checkpoint"
        if not (root / "state.json").is_file():
            raise DataError(f"nothing to resume in {run_dir}: no checkpoint/state.json")
        state = read_json(root / "state.json")
        if state.get("client_states"):
            raise DataError(
                f"{run_dir} was checkpointed by an older fedleak that kept the clients' state on the server; "
                "it cannot be resumed: start a new run"
            )
        return cls(
            server_round=int(state["round"]),
            weights=load_tensors(root / state["weights"]),
            history=list(state["history"]),
            defense_state=dict(state.get("defense_state") or {}),
        )

    @staticmethod
    def exists(run_dir: str | Path) -> bool:
        return (Path(run_dir) / "checkpoint" / "state.json").is_file()
