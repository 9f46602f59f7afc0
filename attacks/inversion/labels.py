"""Label recovery from the last fully connected layer's gradient.

* One example (iDLG, Zhao et al., 2020): the last layer's weight gradient is
  ``(softmax(z) - onehot(y)) h^T``, rank one, and the true class is the only row with a
  negative coefficient. With a bias, the bias gradient ``softmax(z) - onehot(y)`` gives it
  directly; without one, we project the rows on the leading right singular vector and take
  the row whose sign differs from the majority.
* A batch (label counts, Geng et al., "Towards General Deep Leakage in Federated Learning",
  2021): with a bias, its gradient is ``mean_i (p_ic - y_ic)``; approximating ``p_ic`` by its
  average over dummy inputs through the known model gives the count of every class. Without a
  bias (the DIA paper's MLP) Geng et al. divide the class-wise sums of the weight gradient,
  ``mean_i (p_ic - y_ic) O_i``, by the average feature sum ``O``. After GELU the features
  have both signs and the sum is a poor scale, so fedleak projects each class row on the mean
  dummy feature vector ``h`` instead: ``(grad_W[c] . h) / |h|^2``, which is ``mean_i (p_ic - y_ic)``
  where the features point along ``h``. Where the dummy inputs' features sum to clearly positive
  values (a trained model), classes whose weight-gradient row sums below zero get one example
  first (:func:`present_first`, after Wainakh et al.'s sign rule); docs/inversion.md ("Batch
  labels without a bias") has the measurements (benchmarks/label_recovery*.py).

A weight delta is read as the average gradient ``-delta / (lr * local_steps)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError


def last_linear(model: nn.Module, num_classes: int) -> tuple[str, nn.Linear]:
    """The classifier: the last fully connected layer with ``num_classes`` outputs."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not found:
        raise ConfigError("label recovery needs a model whose last layer is fully connected; pass known labels instead")
    return found[-1]


def average_gradient(obs: Observation, key: str) -> Tensor:
    """The observed update of parameter ``key`` as an average gradient."""
    u = obs.update[key].detach().double().cpu()
    if obs.kind == "gradient":
        return u
    return -u / (obs.lr * obs.local_steps)


def recover_labels(obs: Observation, *, dummy: int = 64, seed: int = 0) -> Tensor:
    """Labels of the ``num_examples`` examples behind ``obs`` (a single label, or label counts)."""
    model = obs.build_model()
    name, layer = last_linear(model, obs.num_classes)
    gw = average_gradient(obs, f"{name}.weight")
    gb = average_gradient(obs, f"{name}.bias") if layer.bias is not None else None
    if obs.num_examples == 1:
        return torch.tensor([single_label(gw, gb)])
    probs, feat, sums = _dummy_statistics(model, layer, obs, dummy, seed)
    if gb is not None:
        counts = label_counts(obs.num_examples * (probs - gb), obs.num_examples)
    else:
        estimate = obs.num_examples * (probs - gw @ feat / (feat @ feat))
        if features_positive(sums):
            counts = present_first(gw.sum(1), estimate, obs.num_examples)
        else:
            counts = label_counts(estimate, obs.num_examples)
    return torch.repeat_interleave(torch.arange(obs.num_classes), counts)


POSITIVE_MARGIN = 0.1  # every dummy feature sum above this fraction of their mean


def features_positive(sums: Tensor) -> bool:
    """Whether the penultimate features sum to clearly positive values on every dummy input, the
    premise of :func:`present_first` (GELU features of an untrained MLP sum to about 0)."""
    return bool(sums.min() > POSITIVE_MARGIN * sums.mean())


def present_first(rows: Tensor, estimate: Tensor, total: int) -> Tensor:
    """Label counts that give every class with a negative weight-gradient row sum one example
    first (the most negative first, at most ``total``), then the rest by ``estimate``.

    A heuristic after Wainakh et al.'s sign rule ("User-Level Label Leakage from Gradients in
    Federated Learning", PETS 2022): a class row sums to ``sum_i (p_ic - y_ic) s_i`` with ``s_i``
    example i's feature sum, so where every ``s_i`` is positive only a present class makes it
    negative. An example with a negative feature sum breaks that, so :func:`recover_labels` uses
    the rule only where the dummy inputs' sums are clearly positive (:func:`features_positive`,
    a trained model), and the projection alone otherwise."""
    negative = torch.nonzero(rows < 0).flatten()
    present = negative[torch.argsort(rows[negative])][:total]
    counts = torch.zeros(rows.numel(), dtype=torch.long)
    counts[present] = 1
    rest = total - present.numel()
    if rest > 0:
        left = (estimate.double() - counts).clamp_min(0)
        counts += label_counts(left if left.sum() > 0 else estimate, rest)
    return counts


def single_label(gw: Tensor, gb: Tensor | None) -> int:
    """iDLG: the class whose last-layer gradient coefficient is negative."""
    if gb is not None:
        return int(gb.argmin())
    _, _, vh = torch.linalg.svd(gw, full_matrices=False)
    coef = gw @ vh[0]
    if (coef > 0).sum() < (coef < 0).sum():
        coef = -coef
    return int(coef.argmin())


def label_counts(estimate: Tensor, total: int) -> Tensor:
    """Round real-valued class counts to non-negative integers summing to ``total``.

    A diverged model gives non-finite estimates; those classes count as zero, and an
    estimate with no usable mass falls back to a uniform split.
    """
    n = int(total)
    est = torch.nan_to_num(estimate.double(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    est = est * (n / est.sum()) if est.sum() > 0 else torch.full_like(est, n / est.numel())
    counts = est.floor().long()
    rest = n - int(counts.sum())
    if rest > 0:
        counts[torch.argsort(est - counts, descending=True, stable=True)[:rest]] += 1
    return counts


def _dummy_statistics(
    model: nn.Module, layer: nn.Linear, obs: Observation, dummy: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean softmax, mean penultimate feature vector (summed over tokens) and each dummy input's
    feature sum, over uniform dummy inputs."""
    feats: list[Tensor] = []
    handle = layer.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(dummy, *obs.in_shape, generator=gen))
    handle.remove()
    h = feats[0].reshape(dummy, -1, layer.in_features).sum(1).double()
    return out.double().softmax(-1).mean(0), h.mean(0), h.sum(1)
