"""Shadow models: balanced IN/OUT assignment, path choice, vectorized training as the target's
recipe, and the cache's provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.membership import shadows
from attacks.membership.shadows import (
    balanced_assignment,
    cache_key,
    choose_path,
    train_shadows,
    train_stacked,
)
from attacks.membership.training import ModelTraining, accuracy, train_model
from defenses import DefenseConfig
from fl.core.errors import ConfigError
from fl.models import build_model

DP = DefenseConfig(name="dp-local", target_epsilon=8.0)


def test_mia_assignment_puts_each_record_in_half_the_models() -> None:
    inside = balanced_assignment(8, 1000, seed=3)
    assert inside.shape == (8, 1000)
    assert (inside.sum(0) == 4).all()
    assert np.abs(inside.sum(1) - 500).max() < 60  # every model trains on about half the pool
    odd = balanced_assignment(3, 1000, seed=3).sum(0)
    assert set(np.unique(odd)) == {1, 2}
    one = balanced_assignment(1, 1000, seed=3)
    assert 400 < one.sum() < 600
    np.testing.assert_array_equal(balanced_assignment(8, 100, seed=5), balanced_assignment(8, 100, seed=5))
    with pytest.raises(ConfigError, match="shadow models must be >= 1"):
        balanced_assignment(0, 10, seed=0)


def test_mia_path_choice_per_device() -> None:
    gn = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=4, norm="group")
    bn = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=4, norm="batch")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    mlp = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, hidden=8, depth=1)
    assert choose_path("auto", gn, cpu, None) == "loop"
    assert choose_path("auto", mlp, cpu, None) == "vmap"
    assert choose_path("auto", gn, cuda, None) == "vmap"
    assert choose_path("auto", bn, cuda, None) == "loop"
    assert choose_path("auto", gn, cuda, DP) == "loop"
    with pytest.raises(ConfigError, match="vmap cannot train DP-SGD"):
        choose_path("vmap", gn, cpu, DP)
    with pytest.raises(ConfigError, match="valid choices: auto, vmap, loop"):
        choose_path("fast", gn, cpu, None)


def test_mia_cache_key_depends_on_config_and_data() -> None:
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    base = cache_key({"epochs": 1}, x, y)
    assert base == cache_key({"epochs": 1}, x.clone(), y.clone())
    assert base != cache_key({"epochs": 2}, x, y)
    assert base != cache_key({"epochs": 1}, x + 1, y)


def test_mia_cache_key_resolves_the_default_norm() -> None:
    """norm None means the model's default, so it shares shadows with that norm spelled out."""
    from experiments.membership.central import _key_parts
    from experiments.membership.config import MIAConfig

    assert _key_parts(MIAConfig(model="mlp", norm=None)) == _key_parts(MIAConfig(model="mlp", norm="none"))
    assert _key_parts(MIAConfig(model="convnet", norm=None)) == _key_parts(MIAConfig(model="convnet", norm="batch"))
    assert _key_parts(MIAConfig(model="convnet", norm=None)) != _key_parts(MIAConfig(model="convnet", norm="none"))


def test_mia_vmap_training_fits_each_models_own_half() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (200,), generator=gen)
    inside = torch.from_numpy(balanced_assignment(2, 200, seed=1))
    models = []
    for s in range(2):
        torch.manual_seed(s)
        models.append(build_model("mlp", in_shape=(1, 8, 8), num_classes=4, hidden=64, depth=1, bias=True))
    cfg = ModelTraining(epochs=40, batch_size=25, lr=0.01)
    train_stacked(models, x, y, inside, cfg, seeds=[0, 1], device=torch.device("cpu"), progress=False)
    for m, row in zip(models, inside, strict=True):
        acc_in, acc_out = accuracy(m, x[row], y[row]), accuracy(m, x[~row], y[~row])
        assert acc_in > 0.95 and acc_out < 0.5, (
            acc_in,
            acc_out,
        )  # random labels: memorised, not learned
    assert not torch.equal(models[0][1].weight, models[1][1].weight)


def _pool(n: int = 90) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.randn(n, 1, 6, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _mlp(seed: int, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", in_shape=(1, 6, 6), num_classes=3, hidden=16, depth=1, bias=True, dropout=dropout)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelTraining(epochs=3, batch_size=8, lr=0.05, momentum=0.9, weight_decay=1e-3),
        ModelTraining(epochs=3, batch_size=8, lr=1e-2, optimizer="adam", weight_decay=1e-3),
    ],
    ids=["sgd", "adam"],
)
def test_mia_vmap_and_loop_train_the_same_models(cfg: ModelTraining) -> None:
    """Halves of different sizes (41-49 records, batch 8): each stacked model takes its own
    ceil(n/8) steps a epoch with a smaller last batch, reshuffled from its own seed, as the loop
    (the target's recipe) does; padding every model to the largest half failed this."""
    x, y = _pool()
    inside = torch.from_numpy(balanced_assignment(4, len(x), seed=2))
    assert len(set(inside.sum(1).tolist())) > 1  # unequal halves, partial last batches
    seeds = [11, 12, 13, 14]
    stacked = [_mlp(s) for s in range(4)]
    train_stacked(stacked, x, y, inside, cfg, seeds=seeds, device=torch.device("cpu"), progress=False)
    for s in range(4):
        alone = _mlp(s)
        train_model(alone, x[inside[s]], y[inside[s]], cfg, seed=seeds[s])
        for (name, a), b in zip(alone.state_dict().items(), stacked[s].state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=f"model {s}, {name}")


def _shadows(tmp_path, vectorize: str = "loop", epochs: int = 1):
    x, y = _pool(40)
    return train_shadows(
        lambda seed: _mlp(seed), x, y, num_shadows=3, train=ModelTraining(epochs=epochs, batch_size=8),
        dp=None, seed=5, device=torch.device("cpu"), cache_dir=tmp_path, key_parts={"model": "mlp"},
        vectorize=vectorize, progress=False,
    )  # fmt: skip


def test_mia_shadow_cache_reuses_and_keys_by_setting_path_and_code(tmp_path, monkeypatch) -> None:
    models, inside, info = _shadows(tmp_path)
    assert (info["path"], info["trained"], info["reused"]) == ("loop", 3, 0)
    again, inside2, info2 = _shadows(tmp_path)
    assert (info2["path"], info2["reused"], info2["cache_key"]) == ("loop", 3, info["cache_key"])
    np.testing.assert_array_equal(inside2, inside)
    torch.testing.assert_close(again[0].state_dict(), models[0].state_dict())
    assert _shadows(tmp_path, epochs=2)[2]["reused"] == 0  # a changed setting
    vm = _shadows(tmp_path, vectorize="vmap")[2]  # another path trained these: not reused
    assert (vm["path"], vm["reused"]) == ("vmap", 0) and vm["cache_key"] != info["cache_key"]
    monkeypatch.setattr(shadows, "code_salt", lambda *a: "changed-code")
    changed = _shadows(tmp_path)[2]
    assert changed["reused"] == 0 and changed["cache_key"] != info["cache_key"]


def test_mia_code_salt_covers_the_model_builders(monkeypatch) -> None:
    """The MLP is a torch Sequential: the salt must cover the builder that chose its layers
    (fl/models/mlp.py), not only the class (torch's own source)."""
    from pathlib import Path

    from fl.models import build_model

    model = build_model("mlp", in_shape=(1, 28, 28), num_classes=10)
    assert type(model) is torch.nn.Sequential
    before = shadows.code_salt(model)
    assert shadows.code_salt(model) == before
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: real(self) + (b"#" if self.name == "mlp.py" else b""))
    assert shadows.code_salt(model) != before


def test_mia_shadow_cache_reads_the_stored_assignment(tmp_path) -> None:
    """The IN/OUT split comes from the cache, not from the seed: the cached models were trained
    on what is stored beside them."""
    from fl.core.runs import save_tensors

    _, inside, info = _shadows(tmp_path)
    stored = ~inside  # as if another version of the code had drawn another split
    save_tensors(
        tmp_path / info["cache_key"] / "assignment.safetensors",
        {"inside": torch.from_numpy(stored.astype(np.uint8))},
    )
    _, read, again = _shadows(tmp_path)
    assert again["reused"] == 3
    np.testing.assert_array_equal(read, stored)


def test_mia_paired_assignment_gives_every_shadow_half_the_records() -> None:
    from attacks.membership.shadows import paired_assignment

    inside = paired_assignment(6, 41, seed=3)
    assert sorted(set(inside.sum(1).tolist())) == [20, 21]  # N // 2 and its complement
    assert (inside.sum(0) == 3).all()  # every record IN for exactly one model of each pair
    assert (inside[0] ^ inside[1]).all() and not (inside[0] == inside[2]).all()
    odd = paired_assignment(3, 10, seed=0)
    assert odd[2].sum() == 5


def test_mia_target_training_randomness_is_the_owners_not_the_seeds(tmp_path) -> None:
    """Same config, seed, members and initial weights: the target's batches and dropout masks
    follow the owner's secret (another secret, another model), and the same secret repeats it."""
    from experiments.membership.central import _builder, train_target
    from experiments.membership.config import MIAConfig

    defense = DefenseConfig(name="dropout", dropout=0.3)
    cfg = MIAConfig(dataset="sample", model="mlp", norm=None, model_options={"hidden": 16}, epochs=2, defense=defense)
    x, y = _pool(60)
    build = _builder(cfg, (1, 6, 6), 3)

    def weights(secret: str, cache: str) -> dict[str, torch.Tensor]:
        model, _ = train_target(cfg, build, x, y, secret=secret, device=torch.device("cpu"), cache_dir=tmp_path / cache)
        return {k: v.clone() for k, v in model.state_dict().items()}

    a, again, other = weights("ab" * 16, "1"), weights("ab" * 16, "2"), weights("cd" * 16, "3")
    assert all(torch.equal(a[k], again[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)


def test_mia_dropout_placement_reaches_the_target_and_its_cache_key() -> None:
    """--dropout-placement all puts dropout after every block of a central ConvNet target, as in a
    federation, and a target with another placement is another cache entry."""
    from experiments.membership.central import _builder, _key_parts
    from experiments.membership.config import MIAConfig
    from fl.models.dropout import MaskedDropout

    def cfg(placement: str | None) -> MIAConfig:
        defense = DefenseConfig(name="dropout", dropout=0.3, dropout_placement=placement)
        return MIAConfig(dataset="sample", model="convnet", model_options={"width": 4}, defense=defense)

    def dropouts(placement: str | None) -> int:
        model = _builder(cfg(placement), (3, 32, 32), 10)(0)
        return sum(isinstance(m, MaskedDropout) and m.p > 0 for m in model.modules())

    assert dropouts(None) == 1 and dropouts("all") > 1
    assert _key_parts(cfg("all")) != _key_parts(cfg(None))
