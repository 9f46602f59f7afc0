"""What a curious server keeps, on disk, so attacks can run during the federation or later.

Layout of ``RUN_DIR/capture`` (the attacker's view: only what a Flower server receives)::

    model.json                         ModelSpec of the federated model
    round_0003/global.safetensors      weights the server sent in round 3
    round_0003/round.json              train settings asked for, sampled clients, who was captured
    round_0003/client_0005.safetensors update received from client 5 (new weights - global), float32
    round_0003/aggregate.safetensors   under secure aggregation: the only thing the server sees

``RUN_DIR/truth`` (evaluation only; an attacker never reads it)::

    dataset.json                       dataset name and split the partitions index into
    partitions.npz                     every client's training-record indices (client_0005 = ...)
    round_0003/client_0005.json        dataset indices the client trained on that round, in order
    round_0003/client_0005.masks.safetensors  its dropout masks per step (only when recorded, for the oracle)

The first two are written by whoever dealt the partitions (the simulation driver, or
``fedleak simulate --export-partitions`` for SuperNodes); the per-round files by each client on
its own side (:func:`write_truth`), never sent with its update. On Flower's deployment engine
each SuperNode writes them under its node config's ``truth-dir``; scoring joins them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fl.core.errors import DataError
from fl.core.runs import atomic_write_bytes, atomic_write_json, load_tensors, read_json, save_tensors
from fl.federation.settings import ModelSpec, TrainSettings

CAPTURE_MODES = ("all", "attacked", "none")
AGGREGATE = "aggregate"


def _round_dir(root: Path, server_round: int) -> Path:
    return root / f"round_{server_round:04d}"


def _client_name(client: int | str) -> str:
    return AGGREGATE if client == AGGREGATE else f"client_{int(client):04d}"


@dataclass(frozen=True)
class CapturedUpdate:
    """One update as the server received it, with what the server knows about it."""

    server_round: int
    client: int | str  # partition id, or "aggregate" under secure aggregation
    model: ModelSpec
    weights_before: dict[str, torch.Tensor]  # global state dict the server sent
    update: dict[str, torch.Tensor]  # received weights - weights_before, keyed like the state dict
    kind: str  # "delta": a weight difference after local training
    num_examples: int  # as reported by the client (the sum under secure aggregation)
    settings: TrainSettings  # what the server asked the client to train with
    num_clients: int = 1  # clients summed into this update (> 1 only for the aggregate)

    @property
    def parameter_update(self) -> dict[str, torch.Tensor]:
        """The update restricted to trainable parameters (drops buffers such as BN statistics)."""
        names = {n for n, _ in self.model.build().named_parameters()}
        return {k: v for k, v in self.update.items() if k in names}


def write_truth(truth_dir: str | Path, server_round: int, client: int, indices: list[int]) -> None:
    """A client's record of what it trained on in ``server_round``, kept on its own side."""
    atomic_write_json(_round_dir(Path(truth_dir), server_round) / f"{_client_name(client)}.json", {"indices": indices})


def write_masks(truth_dir: str | Path, server_round: int, client: int, masks: list[dict[str, torch.Tensor]]) -> None:
    """A client's dropout masks of one round, ``<site>.mask`` -> (local_steps, batch, *site), on its own side."""
    stacked = {k: torch.stack([m[k] for m in masks]).to(torch.uint8) for k in masks[0]}
    save_tensors(_round_dir(Path(truth_dir), server_round) / f"{_client_name(client)}.masks.safetensors", stacked)


def write_partitions(truth_dir: str | Path, dataset: str, split: str, partitions: list[np.ndarray]) -> None:
    """Who holds which training records (membership ground truth), written by whoever dealt them."""
    import io

    truth = Path(truth_dir)
    atomic_write_json(truth / "dataset.json", {"dataset": dataset, "split": split})
    buf = io.BytesIO()
    np.savez(buf, **{_client_name(i): np.asarray(p, dtype=np.int64) for i, p in enumerate(partitions)})  # type: ignore[arg-type]  # numpy stubs match **kwds against allow_pickle too
    atomic_write_bytes(truth / "partitions.npz", buf.getvalue())


class CaptureWriter:
    """Write side, used by the curious strategy; every file is written atomically."""

    def __init__(self, run_dir: str | Path, model: ModelSpec) -> None:
        self.root = Path(run_dir) / "capture"
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / "model.json", {"model": model.to_json()})

    def write_global(self, server_round: int, weights: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        rdir = _round_dir(self.root, server_round)
        save_tensors(rdir / "global.safetensors", weights)
        atomic_write_json(rdir / "round.json", info)

    def write_update(
        self, server_round: int, client: int | str, delta: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> None:
        path = _round_dir(self.root, server_round) / f"{_client_name(client)}.safetensors"
        save_tensors(path, delta, metadata={k: str(v) for k, v in meta.items()})


class CaptureStore:
    """Read side: ``CaptureStore(run_dir).load(round, client)`` for attacks and membership inference."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / "capture"
        self.truth = self.run_dir / "truth"
        if not (self.root / "model.json").is_file():
            raise DataError(f"{self.run_dir} holds no captured updates (no capture/model.json)")
        self.model = ModelSpec.from_json(read_json(self.root / "model.json")["model"])

    def rounds(self) -> list[int]:
        """Rounds with a complete capture (global weights written), ascending."""
        return sorted(int(p.parent.name.split("_")[1]) for p in self.root.glob("round_*/round.json"))

    def round_info(self, server_round: int) -> dict[str, Any]:
        path = _round_dir(self.root, server_round) / "round.json"
        if not path.is_file():
            raise DataError(f"round {server_round} was not captured; captured rounds: {self.rounds()}")
        return read_json(path)

    def clients(self, server_round: int) -> list[int | str]:
        """Clients whose update was captured in ``server_round`` (``["aggregate"]`` under SecAgg+)."""
        rdir = _round_dir(self.root, server_round)
        out: list[int | str] = []
        for p in sorted(rdir.glob("*.safetensors")):
            if p.stem == AGGREGATE:
                out.append(AGGREGATE)
            elif p.stem.startswith("client_"):
                out.append(int(p.stem.split("_")[1]))
        return out

    def load(self, server_round: int, client: int | str) -> CapturedUpdate:
        info = self.round_info(server_round)
        path = _round_dir(self.root, server_round) / f"{_client_name(client)}.safetensors"
        if not path.is_file():
            raise DataError(
                f"no captured update for client {client} in round {server_round}; "
                f"captured: {', '.join(map(str, self.clients(server_round))) or 'none'}"
            )
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return CapturedUpdate(
            server_round=server_round,
            client=client,
            model=self.model,
            weights_before=load_tensors(_round_dir(self.root, server_round) / "global.safetensors"),
            update=load_tensors(path),
            kind="delta",
            num_examples=int(meta.get("num_examples", 0)),
            settings=TrainSettings.from_config(info["config"]),
            num_clients=int(meta.get("num_clients", 1)),
        )

    def summed_clients(self, server_round: int) -> list[int]:
        """The clients whose updates the SecAgg+ aggregate of ``server_round`` sums (its survivors)."""
        from safetensors import safe_open

        path = _round_dir(self.root, server_round) / f"{AGGREGATE}.safetensors"
        if not path.is_file():
            raise DataError(f"no aggregate captured in round {server_round}")
        with safe_open(str(path), framework="pt") as fh:
            listed = (fh.metadata() or {}).get("clients", "")
        return [int(c) for c in listed.split(",") if c]

    # -- evaluation-only ground truth (never part of what the attacker sees) --

    def dataset(self) -> dict[str, str]:
        """``{"dataset": name, "split": split}`` the truth indices refer to."""
        return read_json(self.truth / "dataset.json")

    def partition(self, client: int) -> np.ndarray:
        """Every training-record index of ``client`` (membership ground truth)."""
        with np.load(self.truth / "partitions.npz", allow_pickle=False) as data:
            return data[_client_name(client)]

    def true_masks(self, server_round: int, client: int) -> dict[str, torch.Tensor]:
        """``client``'s dropout masks in ``server_round`` (the oracle's bound; recorded only on request)."""
        path = _round_dir(self.truth, server_round) / f"{_client_name(client)}.masks.safetensors"
        if not path.is_file():
            raise DataError(
                f"no dropout masks recorded for client {client} in round {server_round} "
                "(the oracle needs a run whose clients recorded them: fedleak simulate --record-masks)"
            )
        return {k: v.float() for k, v in load_tensors(path).items()}

    def true_indices(self, server_round: int, client: int) -> np.ndarray:
        """Dataset indices ``client`` trained on in ``server_round``, in order of first use."""
        path = _round_dir(self.truth, server_round) / f"{_client_name(client)}.json"
        if not path.is_file():
            raise DataError(f"no ground truth recorded for client {client} in round {server_round}")
        return np.asarray(read_json(path)["indices"], dtype=np.int64)
