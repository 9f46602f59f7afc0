"""The attacks on real CIFAR-10 images: DIA against IG, analytic exactness, batching, labels."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from attacks.inversion import attack_config, invert, invert_many, metrics, recover_labels
from attacks.inversion.labels import label_counts
from attacks.inversion.victims import victim_seeds
from fl.core.errors import ConfigError


def test_dia_beats_ig_against_a_dropout_model(cifar, make_obs) -> None:
    """Same image, same budget, same seed: eval-mode IG fails, DIA recovers (Scheliga et al.), and
    the oracle, given the client's masks, bounds DIA."""
    x, y = cifar.images[:1], cifar.labels[:1]
    obs = make_obs(x, y, dropout=0.25)
    psnr = {}
    for name in ("ig", "dia", "oracle"):
        result = invert(obs, name, config=attack_config(name, iters=200, seed=0))
        assert result.label_source == "recovered" and int(result.labels[0]) == int(y[0])
        psnr[name] = float(metrics.psnr(result.inputs, x)[0])
    assert psnr["dia"] > psnr["ig"] + 8.0, psnr
    assert psnr["oracle"] > psnr["dia"] + 1.0, psnr


def test_balanced_layer_weights_lift_dia_on_a_vit(cifar, make_obs) -> None:
    """On a ViT the global cosine barely sees the embedding gradients that carry the image;
    balancing the tensors (with the faster masks they allow) recovers it better, same image and seed."""
    x, y = cifar.images[:1], cifar.labels[:1]
    obs = make_obs(x, y, model="vit", options={"dim": 128, "depth": 2, "heads": 8, "mlp_dim": 128})
    psnr = {}
    for weights, mask_lr in (("equal", 0.1), ("balanced", 0.3)):
        cfg = attack_config("dia", iters=300, seed=0, tv_weight=1e-5, layer_weights=weights, mask_step_size=mask_lr)
        psnr[weights] = float(metrics.psnr(invert(obs, "dia", config=cfg).inputs, x)[0])
    assert psnr["balanced"] > psnr["equal"] + 2.0, psnr


def test_analytic_recovers_the_input_exactly(cifar, make_obs) -> None:
    x, y = cifar.images[3:4], cifar.labels[3:4]
    obs = make_obs(x, y, options={"hidden": 64, "depth": 2, "bias": True})
    result = invert(obs, "analytic")
    assert (result.inputs - x).abs().max() < 1e-4
    delta = make_obs(x, y, options={"hidden": 64, "depth": 2, "bias": True}, kind="delta", lr=0.01)
    assert (invert(delta, "analytic").inputs - x).abs().max() < 1e-4


def test_analytic_solves_the_vit_position_embedding_whatever_the_dropout_masks(cifar, make_obs) -> None:
    """APRIL (Lu et al., CVPR 2022): the patches solve dL/dE = G^T P, G the position-embedding
    gradient; dropout after the embedding and several local steps on the one example keep it exact."""
    from attacks.inversion.analytic import PatchEmbedding, find_patch_embedding

    x, y = cifar.images[5:6], cifar.labels[5:6]
    obs = make_obs(x, y, model="vit", dropout=0.25)
    assert find_patch_embedding(obs.build_model(), obs.in_shape) == PatchEmbedding(
        "embed.proj", "embed.pos_embed", 1, 4
    )
    assert (invert(obs, "analytic").inputs - x).abs().max() < 1e-4
    two_steps = make_obs(x, y, model="vit", dropout=0.25, kind="delta", lr=0.1, local_steps=2, dtype=torch.float64)
    assert (invert(two_steps, "analytic").inputs - x).abs().max() < 1e-6
    batch = make_obs(cifar.images[:2], cifar.labels[:2], model="vit", dropout=0.25)
    with pytest.raises(ConfigError, match="got an update of 2 examples"):
        invert(batch, "analytic")
    assert find_patch_embedding(make_obs(x, y, model="convnet").build_model(), obs.in_shape) is None


def test_batched_victims_give_the_sequential_results(make_obs) -> None:
    gen = torch.Generator().manual_seed(5)
    images, labels = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64), torch.tensor([1, 7, 7])
    obs = [make_obs(images[i : i + 1], labels[i : i + 1], client_seed=i, dtype=torch.float64) for i in range(3)]
    cfg = attack_config("dia", iters=12, seed=3)
    batched = invert_many(obs, "dia", config=cfg)
    seeds = victim_seeds(3, 3)
    for k, o in enumerate(obs):
        alone = invert_many([o], "dia", config=cfg, seeds=[seeds[k]])[0]
        assert torch.allclose(alone.inputs, batched[k].inputs, atol=1e-6)
        assert alone.grad_loss == pytest.approx(batched[k].grad_loss, abs=1e-9)
        assert all(torch.allclose(alone.masks[s], batched[k].masks[s], atol=1e-6) for s in alone.masks)


def test_lr_decay_at_sets_when_the_learning_rates_drop() -> None:
    from attacks.inversion.optim import LoopSettings, make_optimizer

    def rates(**kw) -> list[tuple[float, float]]:
        s = LoopSettings(iters=8, step_size=0.1, restarts=1, tv_weight=0.0, mask_step_size=0.5, **kw)
        opt, sched = make_optimizer(torch.zeros(1, requires_grad=True), {"m": torch.zeros(1, requires_grad=True)}, s)
        out = []
        for _ in range(8):
            out.append(tuple(round(g["lr"], 8) for g in opt.param_groups))
            opt.step()
            sched.step()
        return out

    ig = rates()  # Inverting Gradients: 10x drops after iterations 3, 5 and 7 of 8
    assert ig == [(0.1, 0.5)] * 3 + [(0.01, 0.05)] * 2 + [(0.001, 0.005)] * 2 + [(0.0001, 0.0005)]
    assert rates(lr_decay_at=(0.75,)) == [(0.1, 0.5)] * 6 + [(0.01, 0.05)] * 2
    assert rates(lr_decay_at=()) == [(0.1, 0.5)] * 8
    with pytest.raises(ConfigError, match="lr_decay_at"):
        attack_config("dia", lr_decay_at=(0.0, 0.5))


def test_dia_given_sites_interpolates_between_dia_and_the_oracle(make_obs) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    obs = [make_obs(x[i : i + 1], torch.tensor([i + 2]), client_seed=i, dtype=torch.float64) for i in range(2)]
    oracle = invert_many(obs, "oracle", config=attack_config("oracle", iters=6, tv_weight=1e-5, recipe="dia"))
    every = invert_many(obs, "dia", config=attack_config("dia", iters=6, given_sites="."))
    for a, b in zip(oracle, every, strict=True):  # all masks handed over: exactly the oracle
        assert torch.equal(a.inputs, b.inputs) and a.grad_loss == b.grad_loss
    part = invert_many(obs, "dia", config=attack_config("dia", iters=6, given_sites=r"^3\."))
    assert set(part[0].masks) == set(obs[0].true_masks) - {"3.mask"}  # the given site is not learned
    with pytest.raises(ConfigError, match="matches no dropout site; the sites are: 3, 6"):
        invert_many(obs, "dia", config=attack_config("dia", iters=2, given_sites="attn"))
    with pytest.raises(ConfigError, match=r"given_sites \(--given-sites\) '\(' is not a regular expression"):
        attack_config("dia", given_sites="(")


def test_dia_mask_init_bernoulli_draws_or_the_mean(make_obs) -> None:
    obs = make_obs(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.tensor([1]))
    start = {}
    for init in ("bernoulli", "mean"):  # one step at a negligible mask learning rate shows the start
        (res,) = invert_many([obs], "dia", config=attack_config("dia", iters=1, mask_step_size=1e-12, mask_init=init))
        start[init] = torch.cat([m.flatten() for m in res.masks.values()])
    assert set(start["bernoulli"].round(decimals=6).unique().tolist()) == {0.0, 1.0}
    assert abs(float(start["bernoulli"].mean()) - 0.75) < 0.05
    assert torch.allclose(start["mean"], torch.full_like(start["mean"], 0.75), atol=1e-6)
    with pytest.raises(ConfigError, match=r"unknown mask_init \(--mask-init\) 'zeros'; valid choices: bernoulli, mean"):
        attack_config("dia", mask_init="zeros")


def test_restarts_keep_the_best_final_distance(make_obs) -> None:
    obs = make_obs(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([5]))
    one = invert(obs, "ig", config=attack_config("ig", iters=10, restarts=1))
    three = invert(obs, "ig", config=attack_config("ig", iters=10, restarts=3))
    assert three.grad_loss <= one.grad_loss
    assert three.trace["loss"][-1] >= three.grad_loss - 0.2  # the kept restart's own trace


def test_label_recovery_single_and_batch(cifar, make_obs) -> None:
    x, y = cifar.images[:6], cifar.labels[:6]
    for bias in (False, True):
        options = {"hidden": 64, "depth": 2, "bias": bias}
        for i in range(3):
            single = make_obs(x[i : i + 1], y[i : i + 1], options=options, client_seed=i)
            assert recover_labels(single).tolist() == [int(y[i])]
    batch = make_obs(x, y, options={"hidden": 64, "depth": 2, "bias": True}, client_seed=0)
    assert metrics.label_accuracy(recover_labels(batch), y) == 1.0


def test_label_counts_keep_the_batch_size_on_a_diverged_model() -> None:
    """Non-finite or negative estimates (a diverged model) still give ``total`` labels."""
    assert label_counts(torch.tensor([1.6, 0.3, 2.1]), 4).tolist() == [2, 0, 2]
    assert label_counts(torch.tensor([float("nan"), -3.0, float("inf")]), 4).tolist() == [2, 1, 1]
    assert label_counts(torch.tensor([float("nan"), 2.0, -1.0]), 3).tolist() == [0, 3, 0]


@pytest.mark.parametrize("label", [2, 6, 9])
def test_dlg_learns_the_label_with_the_image_on_its_sigmoid_lenet(make_obs, label) -> None:
    """DLG as published (Zhu et al.): soft labels optimized jointly from a Gaussian start, L-BFGS with
    PyTorch's defaults; on the paper's sigmoid LeNet it finds the label of a single example."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    obs = make_obs(x, torch.tensor([label]), model="lenet", options={"width": 12}, dropout=0.0)
    r = invert(obs, "dlg", config=attack_config("dlg", iters=30))
    assert r.label_source == "optimized" and r.labels.tolist() == [label]
    assert r.grad_loss < 1e-3 * r.trace["loss"][0]


def test_idlg_extracts_the_label_and_differs_from_dlg(make_obs) -> None:
    obs = make_obs(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)), torch.tensor([6]), dropout=0.0)
    idlg = invert(obs, "idlg", config=attack_config("idlg", iters=15, line_search="strong_wolfe"))
    assert idlg.label_source == "recovered" and idlg.labels.tolist() == [6]
    assert idlg.grad_loss < 0.2 * idlg.trace["loss"][0]
    dlg = invert(obs, "dlg", config=attack_config("dlg", iters=15))
    assert dlg.label_source == "optimized" and not torch.equal(dlg.inputs, idlg.inputs)


def test_attacks_refuse_what_they_cannot_do(make_obs) -> None:
    x, y = torch.rand(1, 3, 32, 32), torch.tensor([1])
    no_dropout = make_obs(x, y, dropout=0.0)
    with pytest.raises(ConfigError, match=r"dia.*dropout"):
        invert(no_dropout, "dia")
    with pytest.raises(ConfigError, match="true dropout masks"):
        invert(replace(make_obs(x, y), true_masks=None), "oracle")
    with pytest.raises(ConfigError, match=r"fully connected with a bias .* or a patch embedding"):
        invert(no_dropout, "analytic")
    with pytest.raises(ConfigError, match="unknown attack 'nope'; valid choices: ") as err:
        invert(no_dropout, "nope")
    assert {"dlg", "idlg", "ig", "dia", "oracle", "analytic"} <= set(str(err.value).split(": ")[1].split(", "))
    with pytest.raises(ConfigError, match="takes a IGConfig"):
        invert(no_dropout, "ig", config=attack_config("dlg"))
    with pytest.raises(ConfigError, match="no option 'mask_reg'"):
        attack_config("ig", mask_reg=1.0)


def test_multi_step_delta_attack_runs_end_to_end(make_obs) -> None:
    gen = torch.Generator().manual_seed(6)
    x, y = torch.rand(4, 3, 32, 32, generator=gen), torch.tensor([1, 2, 3, 4])
    obs = make_obs(x, y, kind="delta", local_steps=3, batch_size=2, lr=0.5)
    result = invert(obs, "dia", config=attack_config("dia", iters=6))
    assert result.inputs.shape == (4, 3, 32, 32)
    assert next(iter(result.masks.values())).shape[:2] == (3, 2)  # one mask per step and sample
    assert result.trace["loss"][-1] < result.trace["loss"][0]


def test_batch_labels_without_a_bias_on_the_dia_papers_mlp(cifar) -> None:
    """The DIA paper's MLP has no bias: projecting the class rows on the mean dummy feature vector
    recovers most labels (the feature sum gave 0.625 at batch 8 on these batches)."""
    from attacks.inversion import observe_client
    from fl.models import build_model

    acc = []
    for k in range(6):
        x, y = cifar.images[8 * k : 8 * (k + 1)], cifar.labels[8 * k : 8 * (k + 1)]
        torch.manual_seed(0)
        net = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
        obs = observe_client(net, x, y, model_name="mlp", generator=torch.Generator().manual_seed(k))
        acc.append(metrics.label_accuracy(recover_labels(obs), y))
    assert sum(acc) / len(acc) >= 0.85, acc


def test_present_first_gives_every_negative_row_one_label_then_follows_the_estimate() -> None:
    """Wainakh et al.'s sign rule: classes whose weight-gradient row sums below 0 are in the batch,
    the most negative first; the remaining count follows the estimate minus what was given."""
    from attacks.inversion.labels import present_first

    rows = torch.tensor([0.3, -0.2, 0.1, -0.5], dtype=torch.float64)
    estimate = torch.tensor([1.5, 0.0, 0.5, 0.0], dtype=torch.float64)  # a projection that misses 1 and 3
    assert present_first(rows, estimate, 2).tolist() == [0, 1, 0, 1]
    assert present_first(rows, estimate, 3).tolist() == [1, 1, 0, 1]
    assert present_first(rows, estimate, 1).tolist() == [0, 0, 0, 1]  # more negative rows than labels
    assert present_first(-rows.abs(), torch.zeros(4, dtype=torch.float64), 6).sum() == 6


def test_sign_rule_waits_for_clearly_positive_features(cifar) -> None:
    """On the untrained paper MLP the GELU features of noise sum to about 0, a present class's row
    can sum above 0, and the sign rule alone would drop it (CIFAR-10 test images 0 and 1, classes
    3 and 8); recover_labels then takes the projection alone and gets both."""
    from attacks.inversion import observe_client
    from attacks.inversion.labels import (
        _dummy_statistics,
        features_positive,
        last_linear,
        present_first,
    )
    from fl.models import build_model

    assert not features_positive(torch.tensor([1.0, 0.05, 2.0])) and features_positive(torch.ones(3))
    x, y = cifar.images[:2], cifar.labels[:2]
    torch.manual_seed(0)
    net = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
    obs = observe_client(net, x, y, model_name="mlp", generator=torch.Generator().manual_seed(0))
    model = obs.build_model()
    name, layer = last_linear(model, 10)
    probs, feat, sums = _dummy_statistics(model, layer, obs, 64, 0)
    gw = obs.update[f"{name}.weight"].double()
    assert not features_positive(sums)
    sign_only = present_first(gw.sum(1), 2 * (probs - gw @ feat / (feat @ feat)), 2)
    assert metrics.label_accuracy(torch.repeat_interleave(torch.arange(10), sign_only), y) < 1.0
    assert metrics.label_accuracy(recover_labels(obs), y) == 1.0
