"""The ClientApp: a client trains the global model on its partition and replies with new weights.

Message API of flwr >= 1.21 (``@app.train``, ``@app.query``). A defense's client mods
(local DP noise, clipping, pruning, quantization) wrap the handler, so the reply that leaves
the client is the defended one. The client's secret key and defense state (e.g. its privacy
accountant) stay on the client's side (:mod:`fl.federation.client_side`): the server can neither
regenerate the client's randomness nor reset its accountant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from fl.core.errors import ConfigError
from fl.federation.capture import write_masks, write_truth
from fl.federation.client_side import client_store, data_digest, open_record, read_client_secret
from fl.federation.local_training import state_dict_cpu, train_local
from fl.federation.secagg import fitres_content, is_secagg_message, read_fitins
from fl.federation.settings import ModelSpec, TrainSettings

CLIENT_KEY = "fedleak"

_DATA_CACHE: dict[tuple[str, ...], Any] = {}


class InjectedFault(RuntimeError):
    """Raised by a client listed in ``ClientSpec.faults`` (tests the server's failure handling)."""


class ReplyLost(RuntimeError):
    """Raised after training by a client listed in ``ClientSpec.lost``: its reply never arrives.

    The in-process grid drops the reply, as the network would, so the server sees a timeout; the
    client has trained and spent its privacy budget all the same.
    """


@dataclass(frozen=True)
class ClientSpec:
    """What every client process needs; pickled once into the simulation's workers."""

    model: ModelSpec
    dataset: str
    partitions: tuple[np.ndarray, ...]  # client id -> indices into the training split (empty: each node's data file)
    data_root: str | None = None
    client_secret: str | None = None  # the clients' secret their keys derive from (None: each key from the OS)
    settings_tag: str = ""  # public digest of the run's settings, mixed into every key (client_side.settings_tag)
    client_dir: str | None = None  # where each client keeps its key and state (None: Flower's context.state)
    device: str = "cpu"
    truth_dir: str | None = None  # where each client records what it trained on (a node config's truth-dir wins)
    partition_tag: str = ""  # node data: how the run deals partitions (a node's data-file must match it)
    record_masks: bool = False  # also record each step's dropout masks beside the truth (the oracle's bound)
    faults: frozenset[tuple[int, int]] = field(default_factory=frozenset)  # (round, client) that raise
    lost: frozenset[tuple[int, int]] = field(default_factory=frozenset)  # (round, client) whose reply is lost


def client_data(
    spec: ClientSpec, client: int, data_file: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, labels, dataset_indices)`` of ``client``, loaded once per process.

    ``data_file`` (a SuperNode's ``data-file`` node config): the node's own partition, as written by
    ``fedleak simulate --export-partitions``; the node loads nothing else. Otherwise the client's
    share of the training split by ``spec.partitions``.
    """
    if data_file is not None:
        from fl.data.partition_file import load_partition_file

        key = ("file", data_file)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = load_partition_file(
                data_file, dataset=spec.dataset, client=client, tag=spec.partition_tag
            )
        return _DATA_CACHE[key]
    if not spec.partitions:
        raise ConfigError(
            f"client {client}: the run leaves the data to the nodes, but this node's config names no data-file"
        )
    key = (spec.dataset, spec.data_root or "")
    if key not in _DATA_CACHE:
        from fl.data import load_dataset

        _DATA_CACHE[key] = load_dataset(spec.dataset, split="train", root=spec.data_root)
    data = _DATA_CACHE[key]
    idx = torch.as_tensor(spec.partitions[client], dtype=torch.long)
    return data.images[idx], data.labels[idx], idx


def handle_train(spec: ClientSpec, defense: Any, message: Message, context: Context) -> Message:
    """One round of local training for the client behind ``context`` (pure Flower handler).

    A SecAgg+ round (``is_secagg_message``) carries legacy ``fitins`` records and is answered
    with a legacy ``fitres``, which ``secaggplus_mod`` then masks; otherwise Message API records.
    """
    client = int(context.node_config["partition-id"])
    secagg = is_secagg_message(message.content)
    model = spec.model.build()
    if secagg:
        weights, config = read_fitins(message.content, list(model.state_dict()))
    else:
        config = dict(next(r for r in message.content.config_records.values() if "server-round" in r))
        weights = next(iter(message.content.array_records.values())).to_torch_state_dict()
    server_round = int(config["server-round"])
    if (server_round, client) in spec.faults:
        raise InjectedFault(f"client {client} fails in round {server_round} (injected fault)")
    settings = TrainSettings.from_config(config)
    store = client_store(spec.client_dir or cast(str | None, context.node_config.get("client-dir")), context)
    data_file = context.node_config.get("data-file")
    images, labels, indices = client_data(spec, client, str(data_file) if data_file else None)
    record = open_record(
        store,
        client,
        client_secret(spec, context),
        spec.settings_tag,
        data=lambda: data_digest(images, labels, indices),
    )
    turn = record.participations  # this participation's randomness is fresh, whatever the server sends
    # Flower's client mods (LocalDpMod, SecAgg+'s stochastic quantization) draw from NumPy's global
    # RNG after this handler returns: seed it from the client's key.
    np.random.seed(record.key.numpy_seed("client-mods", turn))
    state = dict(record.state)
    device = torch.device(spec.device)
    truth_dir = context.node_config.get("truth-dir") or spec.truth_dir
    if not spec.partitions and not truth_dir:
        raise ConfigError(
            f"client {client}: the nodes hold the data, but this node's config names no truth-dir "
            "(where the client records what it trained on, for scoring afterwards)"
        )
    masks: list[dict[str, torch.Tensor]] | None = [] if spec.record_masks and truth_dir else None
    model = model.to(device)
    model.load_state_dict(weights)
    result = train_local(
        model,
        images.to(device),
        labels.to(device),
        indices.to(device),
        settings,
        seed=record.key.seed("train", turn),
        defense=defense,
        client_state=state,
        rounds=int(config["client-rounds"]),
        masks=masks,
    )
    store.save(client, record.after(state))  # before the reply leaves: a lost reply still counts
    if truth_dir:  # on the client's side, never in the reply
        write_truth(str(truth_dir), server_round, client, [int(i) for i in result.indices.cpu()])
        if masks:
            write_masks(str(truth_dir), server_round, client, masks)
    if (server_round, client) in spec.lost:
        raise ReplyLost(f"client {client}'s reply in round {server_round} is lost (injected)")
    metrics = {"num-examples": result.num_examples, **result.metrics}
    if getattr(defense, "privacy_unit", None) is None:  # under DP the loss is data-dependent and unaccounted
        metrics["train-loss"] = result.loss
    if secagg:
        content = fitres_content(state_dict_cpu(model), result.num_examples, {**metrics, "partition-id": client})
        return Message(content=content, reply_to=message)
    content = RecordDict(
        {
            "arrays": ArrayRecord(state_dict_cpu(model)),
            "metrics": MetricRecord(metrics),
            CLIENT_KEY: ConfigRecord({"partition-id": client}),
        }
    )
    return Message(content=content, reply_to=message)


def client_secret(spec: ClientSpec, context: Context) -> str | None:
    """The clients' secret: the driver's, or the file a SuperNode's ``client-secret-file`` node config names."""
    if spec.client_secret is not None:
        return spec.client_secret
    path = context.node_config.get("client-secret-file")
    return read_client_secret(str(path)) if path else None


def handle_query(message: Message, context: Context) -> Message:
    """Tell the server which client (partition id) this node is."""
    client = int(context.node_config["partition-id"])
    return Message(RecordDict({CLIENT_KEY: ConfigRecord({"partition-id": client})}), reply_to=message)


def train_only(mod: Callable[..., Message]) -> Callable[..., Message]:
    """Apply a defense mod to train messages only (Flower's DP mods reject the roster query)."""

    def wrapped(message: Message, context: Context, call_next: Callable[..., Message]) -> Message:
        if message.metadata.message_type.split(".")[0] != MessageType.TRAIN:
            return call_next(message, context)
        return mod(message, context, call_next)

    return wrapped


def make_client_app(spec: ClientSpec, defense: Any = None) -> ClientApp:
    """A ClientApp training with ``spec``; ``defense`` (duck-typed ``Defense``) adds its mods and hooks."""
    mods = [train_only(m) for m in defense.client_mods()] if defense is not None else []
    app = ClientApp(mods=mods)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return handle_train(spec, defense, message, context)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return handle_query(message, context)

    return app
