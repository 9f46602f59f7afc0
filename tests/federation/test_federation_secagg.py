"""SecAgg+ through Flower's workflow and mod (in-process grid): the server sees only the aggregate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defenses import DefenseConfig, build_defense
from experiments.federated.attacking import true_images
from fl.data import load_dataset
from fl.federation.capture import AGGREGATE, CaptureStore, write_partitions
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.client_side import ClientKey, data_digest
from fl.federation.inline_grid import InlineGrid
from fl.federation.local_training import train_local
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec, TrainSettings

DATA = load_dataset("sample")
SECRET = "00112233445566778899aabbccddeeff"  # the clients' secret, so the test can replay their training
SPEC = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 32, "depth": 2})


def _initial() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in SPEC.build().state_dict().items()}


@pytest.mark.parametrize(("how", "dropped"), [(None, None), ("fails", 1), ("reply lost", 1)])
def test_federation_secagg_capture_is_only_the_weighted_sum_of_true_updates(tmp_path, how, dropped):
    """With ``dropped`` failing mid-round (before training, or after it with its reply lost), SecAgg+
    unmasks the survivors' sum from the key shares, and the aggregate is scored against theirs only."""
    clients, settings = 4, TrainSettings(local_steps=1, batch_size=4, lr=0.1)
    parts = tuple(np.array_split(np.arange(len(DATA)), clients))
    defense = build_defense(DefenseConfig(name="secagg"))
    assert defense.secure_aggregation
    spec = ServerSpec(
        model=SPEC,
        num_clients=clients,
        num_rounds=1,
        settings=settings,
        capture="all",
        max_client_examples=max(len(p) for p in parts),
    )
    server = FederationServer(
        spec=spec, run_dir=tmp_path, initial_weights=_initial(), test_data=(DATA.images, DATA.labels), defense=defense
    )
    write_partitions(tmp_path / "truth", "sample", "train", list(parts))
    faults = frozenset({(1, dropped)}) if how == "fails" else frozenset()
    lost = frozenset({(1, dropped)}) if how == "reply lost" else frozenset()
    client_spec = ClientSpec(
        model=SPEC,
        dataset="sample",
        partitions=parts,
        truth_dir=str(tmp_path / "truth"),
        faults=faults,
        lost=lost,
        client_secret=SECRET,
    )
    server.run(InlineGrid(make_client_app(client_spec, defense), clients))
    survivors = [c for c in range(clients) if c != dropped]
    assert server.result.history[0]["failed"] == ([] if dropped is None else [dropped])

    store = CaptureStore(tmp_path)
    assert store.clients(1) == [AGGREGATE]  # nothing per client reached the server's disk
    cap = store.load(1, AGGREGATE)
    assert cap.num_clients == len(survivors) and cap.num_examples == sum(len(parts[c]) for c in survivors)
    assert store.summed_clients(1) == survivors  # a client that trained but whose reply was lost is not in the sum
    scored = true_images(store, 1, AGGREGATE, torch.arange(len(DATA)))
    assert sorted(scored.tolist()) == sorted(int(i) for c in survivors for i in store.true_indices(1, c))
    if how == "reply lost":  # it trained, so it recorded its truth, but its batch is not in the sum
        assert not set(store.true_indices(1, dropped).tolist()) & set(scored.tolist())
    # Each client's true update, recomputed exactly as the client trains (same key, same batch).
    deltas, weights = [], []
    for c in survivors:
        part = parts[c]
        model = SPEC.build()
        model.load_state_dict(_initial())
        idx = torch.as_tensor(part)
        key = ClientKey.derive(SECRET, "", c, data_digest(DATA.images[idx], DATA.labels[idx], idx))
        res = train_local(model, DATA.images[idx], DATA.labels[idx], idx, settings, seed=key.seed("train", 0))
        assert res.indices.tolist() == store.true_indices(1, c).tolist()  # truth kept apart for scoring
        deltas.append({k: v - _initial()[k] for k, v in model.state_dict().items()})
        weights.append(len(part))
    total = sum(weights)
    for k in cap.update:
        expected = sum(w * d[k] for w, d in zip(weights, deltas, strict=True)) / total
        # SecAgg+ quantizes each weighted weight to 2**22 levels over [-8, 8]: step 3.8e-6.
        torch.testing.assert_close(cap.update[k], expected, rtol=0, atol=2e-5)
        assert not any(torch.allclose(cap.update[k], d[k], atol=1e-6) for d in deltas)
    final = server.result.weights
    for k in final:
        torch.testing.assert_close(final[k] - _initial()[k], cap.update[k], rtol=0, atol=1e-6)
