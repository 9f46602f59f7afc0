"""The curious server's attack runs its optimization in one torch thread, then restores the setting."""

from __future__ import annotations

import numpy as np
import torch

import experiments.federated.attacking as attacking
from fl.data import load_dataset
from fl.federation.capture import CaptureStore, write_partitions
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec, TrainSettings


def _one_round(run_dir, spec: ModelSpec, data) -> None:
    """One captured FedSGD round of two clients with 4 bundled images each (batch 4, one step)."""
    parts = tuple(np.array_split(np.arange(8), 2))
    server = FederationServer(
        spec=ServerSpec(
            model=spec, num_clients=2, num_rounds=1, settings=TrainSettings(local_steps=1, batch_size=4), capture="all"
        ),
        run_dir=run_dir,
        initial_weights=spec.build().state_dict(),
        test_data=(data.images, data.labels),
    )
    write_partitions(run_dir / "truth", "sample", "train", list(parts))
    server.run(
        InlineGrid(
            make_client_app(
                ClientSpec(model=spec, dataset="sample", partitions=parts, truth_dir=str(run_dir / "truth"))
            ),
            2,
        )
    )


def test_federation_attack_optimizes_in_the_requested_threads_and_restores_them(tmp_path, monkeypatch):
    data = load_dataset("sample")
    spec = ModelSpec("mlp", data.shape, data.num_classes, options={"hidden": 16, "depth": 1})
    _one_round(tmp_path, spec, data)
    seen: list[int] = []
    real = attacking.invert_many

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(attacking, "invert_many", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        store = CaptureStore(tmp_path)
        [one] = attacking.attack_captured(store, [(1, 0)], "ig", data.images, iters=2)
        assert torch.get_num_threads() == 2
        attacking.attack_captured(store, [(1, 0)], "ig", data.images, iters=2, threads=0)
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]
    assert one.reconstruction.shape == one.truth.shape == (4, *data.shape)


def test_federation_attack_reports_label_accuracy_against_the_truth(tmp_path):
    """A batch table needs the labels too: the recovered labels are scored (as multisets) against
    the client's true labels, read from the truth after the attack."""
    data = load_dataset("sample")
    spec = ModelSpec("mlp", data.shape, data.num_classes, options={"hidden": 16, "depth": 1, "bias": True})
    _one_round(tmp_path, spec, data)
    store = CaptureStore(tmp_path)
    without, with_labels = (
        attacking.attack_captured(store, [(1, 1)], "ig", data.images, iters=2, train_labels=labels)[0]
        for labels in (None, data.labels)
    )
    assert without.label_acc is None
    truth = data.labels[torch.as_tensor(store.true_indices(1, 1))]
    assert len(truth) == 4
    assert with_labels.label_acc == 1.0  # with a bias, batch label counts are exact
