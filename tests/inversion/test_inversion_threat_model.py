"""The threat model: the client's private dropout masks, and the attacker's replay of its training."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, grad_and_value

from attacks.inversion.matching import eager_grad_and_value
from attacks.inversion.victims import prepare
from fl.models import dropout_sites


def _loss(victims, x, masks):
    t = {k: v[0] for k, v in victims.targets.items()}
    return victims.matcher.loss(victims.params, x, victims.labels[0], masks, t)


def test_client_masks_come_from_its_own_generator(make_obs) -> None:
    x, y = torch.rand(1, 3, 32, 32), torch.tensor([4])
    a, b, c = (make_obs(x, y, client_seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a.update[k], b.update[k]) for k in a.update)
    assert not all(torch.equal(a.update[k], c.update[k]) for k in a.update)
    keep = torch.cat([m.flatten() for m in a.true_masks.values()]).mean()
    assert 0.6 < float(keep) < 0.9  # Bernoulli(1 - 0.25)


def test_only_the_true_masks_replay_the_client_gradient(make_obs) -> None:
    """ig's attacker (dropout off, eval mode) cannot match the update even on the true image."""
    x, y = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([4])
    obs = make_obs(x, y, dtype=torch.float64, known_labels=True)
    victims = prepare([obs], [0], device=torch.device("cpu"))
    assert victims.matcher.model.training  # normalisation as in training ...
    assert not any(site.training for _, site in dropout_sites(victims.matcher.model))  # ... dropout off
    true = {k: m.double() for k, m in obs.true_masks.items()}
    assert abs(float(_loss(victims, x, true))) < 1e-10
    assert float(_loss(victims, x, {})) > 0.05  # the eval-mode baseline misses on the true image


@pytest.mark.parametrize(
    ("model", "options"),
    [("mlp", {"hidden": 32, "depth": 2, "bias": True}), ("vit", {"dim": 32, "depth": 1, "heads": 4, "mlp_dim": 32})],
)
def test_ghost_inner_products_equal_the_plain_gradient_distance(make_obs, model, options) -> None:
    x, y = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([2])
    obs = make_obs(x, y, model=model, options=options, dtype=torch.float64, known_labels=True)
    cand = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    masks = {k: torch.rand(m.shape, dtype=torch.float64) for k, m in obs.true_masks.items()}
    fast, plain = (prepare([obs], [0], device=torch.device("cpu"), ghost=g) for g in (True, False))
    assert fast.matcher.linear and not plain.matcher.linear
    assert torch.allclose(_loss(fast, cand, masks), _loss(plain, cand, masks), atol=1e-12)
    g_fast = grad(lambda c: _loss(fast, c, masks))(cand)
    g_plain = grad(lambda c: _loss(plain, c, masks))(cand)
    assert torch.allclose(g_fast, g_plain, atol=1e-12)


@pytest.mark.parametrize(
    ("model", "options", "client"),
    [
        ("mlp", {"hidden": 32, "depth": 2, "bias": True}, {}),
        ("vit", {"dim": 32, "depth": 1, "heads": 4, "mlp_dim": 32}, {}),
        ("mlp", {"hidden": 32, "depth": 2}, {"kind": "delta", "local_steps": 2, "lr": 0.5}),
    ],
)
def test_eager_autograd_replay_equals_torch_func(make_obs, model, options, client) -> None:
    """The single-victim path (plain autograd) computes the loss and gradients of the vmap path."""
    x, y = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([6])
    obs = make_obs(x, y, model=model, options=options, dtype=torch.float64, known_labels=True, **client)
    cand = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    masks = {k: torch.rand(m.shape, dtype=torch.float64) for k, m in obs.true_masks.items()}
    victims = prepare([obs], [0], device=torch.device("cpu"))
    values = {}
    for eager in (False, True):
        victims.matcher.eager = eager
        step = (eager_grad_and_value if eager else grad_and_value)(lambda c, m: _loss(victims, c, m), argnums=(0, 1))
        values[eager] = step(cand, masks)
    (gx_f, gm_f), loss_f = values[False]
    (gx_e, gm_e), loss_e = values[True]
    assert float(loss_f) > 1e-3 and torch.allclose(loss_e, loss_f, atol=1e-12)
    assert gx_f.abs().max() > 0 and torch.allclose(gx_e, gx_f, atol=1e-12)
    assert all(torch.allclose(gm_e[k], gm_f[k], atol=1e-12) for k in masks)


def test_multi_step_delta_is_unrolled_not_treated_as_one_gradient(make_obs) -> None:
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    obs = make_obs(x, y, dtype=torch.float64, kind="delta", local_steps=3, batch_size=2, lr=0.5, known_labels=True)
    assert obs.step_indices() == [[0, 1], [2, 3], [0, 1]]
    assert next(iter(obs.true_masks.values())).shape[:2] == (3, 2)
    victims = prepare([obs], [0], device=torch.device("cpu"))
    true = {k: m.double() for k, m in obs.true_masks.items()}
    assert abs(float(_loss(victims, x, true))) < 1e-10  # the unrolled replay reproduces the delta
    g = grad(victims.matcher.train_loss)(victims.params, x[:2], y[:2], {k: m[0] for k, m in true.items()})
    dot = sum((g[k] * obs.update[k]).sum() for k in g)
    cos = -dot / (sum((g[k] ** 2).sum() for k in g).sqrt() * sum((u**2).sum() for u in obs.update.values()).sqrt())
    assert float(cos) < 0.999  # a single gradient is not the same direction as the 3-step delta


@pytest.mark.parametrize(
    ("model", "options"),
    [("mlp", {"hidden": 32, "depth": 2, "bias": True}), ("vit", {"dim": 32, "depth": 1, "heads": 4, "mlp_dim": 32})],
)
def test_balanced_layer_weights_give_every_tensor_the_same_say(make_obs, model, options) -> None:
    """The balanced cosine is the plain cosine of the updates with every tensor divided by the
    observed tensor's norm, on the ghost and plain paths alike."""
    from attacks.inversion.matching import WEIGHT_KEY

    x, y = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([2])
    obs = make_obs(x, y, model=model, options=options, dtype=torch.float64, known_labels=True)
    cand = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    masks = {k: torch.rand(m.shape, dtype=torch.float64) for k, m in obs.true_masks.items()}
    fast, plain = (
        prepare([obs], [0], device=torch.device("cpu"), ghost=g, layer_weights="balanced") for g in (True, False)
    )
    u = plain.matcher.simulate(plain.params, cand, plain.labels[0], masks)
    t = {k: obs.update[k] for k in u}
    unit = {k: v / v.norm() for k, v in t.items()}
    expected = 1 - sum((u[k] / t[k].norm() * unit[k]).sum() for k in u) / (
        torch.sqrt(sum((u[k] / t[k].norm()).pow(2).sum() for k in u)) * len(u) ** 0.5
    )
    for victims in (fast, plain):
        assert float(_loss(victims, cand, masks)) == pytest.approx(float(expected), abs=1e-12)
    assert all(float(fast.targets[WEIGHT_KEY + k][0]) == pytest.approx(float(t[k].norm() ** -2), rel=1e-12) for k in u)
    equal = prepare([obs], [0], device=torch.device("cpu"))
    assert abs(float(_loss(equal, cand, masks)) - float(expected)) > 1e-3  # the weights change the distance


def test_layer_weights_refuse_what_they_cannot_weigh(make_obs) -> None:
    from fl.core.errors import ConfigError

    obs = make_obs(torch.rand(1, 3, 32, 32), torch.tensor([1]))
    with pytest.raises(ConfigError, match="layer_weights 'nope' is not one of 'equal', 'balanced'"):
        prepare([obs], [0], device=torch.device("cpu"), layer_weights="nope")
    with pytest.raises(ConfigError, match="applies to the cosine distance only, not 'l2'"):
        prepare([obs], [0], device=torch.device("cpu"), distance="l2", layer_weights="balanced")


def test_ghost_path_is_chosen_per_layer_by_cost(make_obs) -> None:
    """Gram matrices grow with the square of the rows: a one-example MLP layer takes the ghost
    path, the ViT's token-wise layers (65 tokens per image) do not."""
    from attacks.inversion.matching import ghost_pays

    assert ghost_pays(1, 3072, 512) and ghost_pays(8, 512, 512)
    assert not ghost_pays(8 * 65, 256, 256) and not ghost_pays(65, 32, 32)
    x, y = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.tensor([2])
    vit = make_obs(x, y, model="vit", options={"dim": 32, "depth": 1, "heads": 4, "mlp_dim": 32}, dtype=torch.float64)
    chosen = set(prepare([vit], [0], device=torch.device("cpu")).matcher.linear)
    assert chosen and all("head" in name for name in chosen), chosen  # only the class token's head
    mlp = make_obs(x, y, dtype=torch.float64)
    every = {n for n, m in mlp.build_model().named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(prepare([mlp], [0], device=torch.device("cpu")).matcher.linear) == every


class _Twice(torch.nn.Module):
    """A model that applies one fully connected layer twice per forward pass."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], 16)
        self.shared = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x.flatten(1)))
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(h)))))


class _Tied(torch.nn.Module):
    """Two fully connected layers sharing one weight (weight tying), each run once."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], 16)
        self.a = torch.nn.Linear(16, 16)
        self.b = torch.nn.Linear(16, 16)
        self.b.weight = self.a.weight
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x.flatten(1)))
        return self.head(torch.tanh(self.b(torch.tanh(self.a(h)))))


@pytest.mark.parametrize("name, model", [("twice", _Twice), ("tied", _Tied)])
def test_linear_layers_the_ghost_path_cannot_score_take_the_plain_gradient(make_obs, monkeypatch, name, model) -> None:
    """The ghost hook keeps one input per layer: a layer run twice would be scored wrongly, and a
    weight shared by two layers gets the sum of both layers' gradients, which no single layer's
    Gram matrices give. Such layers are matched on their plain gradient (the distance then
    equals the plain path's)."""
    from fl.models.registry import MODELS

    monkeypatch.setitem(MODELS._items, name, model)
    x, y = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.tensor([1])
    obs = make_obs(x, y, model=name, options={}, dropout=0.0, dtype=torch.float64, known_labels=True)
    fast, plain = (prepare([obs], [0], device=torch.device("cpu"), ghost=g) for g in (True, False))
    assert set(fast.matcher.linear) == {"inp", "head"}
    cand = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_loss(fast, cand, {}), _loss(plain, cand, {}), atol=1e-12)


def test_the_sample_rebuilds_the_head_of_the_real_cifar_test_split(data_root, cifar_sample_head) -> None:
    """The plain-clone victims are the real ones: CIFAR-10 test images 0..55, bit for bit."""
    from fl.data import load_dataset

    real = load_dataset("cifar10", split="test", root=data_root)
    head = cifar_sample_head
    assert torch.equal(head.images, real.images[:56]) and torch.equal(head.labels, real.labels[:56])
