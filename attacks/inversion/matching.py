"""Gradient matching: simulate the client on candidate data and compare with the observed update.

The attacker replays the client's local training functionally (``torch.func``), from the
weights the server sent, on candidate inputs, labels and dropout masks, and measures the
distance to the observed update: the cosine distance of Inverting Gradients (Geiping et al.,
NeurIPS 2020) or the squared L2 distance of DLG (Zhu et al., NeurIPS 2019). One local step is
compared as a gradient; several are unrolled (SGD, the client's learning rate and batches)
and compared as the weight delta, as Inverting Gradients does for FedAvg.

Layer weights: the cosine runs over all parameters at once, so tensors with large gradients
dominate it (on the small ViT the classifier head holds about 77 % of the squared gradient
norm, the patch and position embeddings, which carry the image, 0.2 %). ``layer_weights=
"balanced"`` gives parameter tensor ``k`` the weight ``1 / |t_k|^2`` in every sum of the cosine
(``t`` the observed update), so each tensor counts as much as any other; Inverting Gradients'
code offered per-layer weights for the same reason. The default, ``"equal"``, is the papers'.

Single-step fast path ("ghost" inner products): a fully connected layer's weight gradient is
``D^T A`` (output gradients times inputs), so its inner product with the target ``T`` is
``sum(D * (A T^T))`` and its squared norm ``sum((D D^T) * (A A^T))`` (the trick of ghost
clipping, Li et al., ICLR 2022). Neither needs the weight-sized per-victim gradient, which
is what makes an MLP iteration cost a few forward passes instead of many elementwise passes
over weight-sized tensors. The Gram matrices grow with the square of the rows ``n`` the layer
sees (batch x tokens), so a layer takes the ghost path only where ``n^2 (in + out)`` stays
below ``in x out`` (:func:`ghost_pays`), and only if it runs once per forward pass (a reused
module's hook would see several inputs); the other layers' gradients are computed as they are.

One victim, no ``vmap``: with ``Matcher.eager`` the inner gradients come from plain autograd
(``create_graph=True``, :func:`eager_grad_and_value`) instead of ``torch.func.grad``. The values
are the same; torch.func's per-operation dispatch layers are skipped, which on the ViT (many small
operations) is the difference between about 4.2 and 3.2 forward+backward passes per iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_
from torch.nn import functional as F

from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError
from fl.models import dropout_sites

DISTANCES = ("cosine", "l2")
LAYER_WEIGHTS = ("equal", "balanced")
WEIGHT_KEY = "__w2__/"  # prefix of the per-tensor squared weights riding along in a target
BN_MEAN_KEY, BN_VAR_KEY = "__bn_mean__/", "__bn_var__/"  # the client's BatchNorm batch statistics in a target
Params = dict[str, Tensor]


def check_layer_weights(name: str) -> None:
    """Refuse an unknown layer weighting (one clear line)."""
    if name not in LAYER_WEIGHTS:
        raise ConfigError(f"layer_weights {name!r} is not one of {', '.join(map(repr, LAYER_WEIGHTS))}")


def eager_grad_and_value(
    f: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False, *, create_graph: bool = True
) -> Callable:
    """``torch.func.grad_and_value`` on plain autograd: gradients w.r.t. the tensor or
    ``dict[str, Tensor]`` arguments ``argnums``, differentiable with ``create_graph`` (inner
    gradients an outer backward pass goes through). For one call outside ``vmap`` only."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def leaf(t: Tensor) -> Tensor:
        return t if t.requires_grad else t.detach().requires_grad_(True)

    def wrapped(*args):
        args = list(args)
        for i in nums:
            args[i] = {k: leaf(t) for k, t in args[i].items()} if isinstance(args[i], dict) else leaf(args[i])
        with torch.enable_grad():
            out = f(*args)
            value, aux = out if has_aux else (out, None)
            flat = [t for i in nums for t in (args[i].values() if isinstance(args[i], dict) else [args[i]])]
            grads = iter(
                torch.autograd.grad(value, flat, create_graph=create_graph, allow_unused=True, materialize_grads=True)
            )
        per_arg = [{k: next(grads) for k in args[i]} if isinstance(args[i], dict) else next(grads) for i in nums]
        g = per_arg[0] if isinstance(argnums, int) else tuple(per_arg)
        return (g, (value, aux)) if has_aux else (g, value)

    return wrapped


def eager_grad(f: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """``torch.func.grad`` on plain autograd (see :func:`eager_grad_and_value`)."""
    inner = eager_grad_and_value(f, argnums, has_aux)

    def wrapped(*args):
        g, value = inner(*args)
        return (g, value[1]) if has_aux else g

    return wrapped


@dataclass
class _Tap:
    """Per-call state of the forward hooks on fully connected layers (ghost path)."""

    eps: dict[str, Tensor]
    acts: dict[str, Tensor] = field(default_factory=dict)


class Matcher:
    """The client simulation and gradient distance for observations of one architecture.

    All functions are pure in their tensor arguments, so they compose with ``torch.func.grad``
    and ``torch.func.vmap`` (one call per victim, or many victims at once). Set ``eager`` for
    a single victim outside ``vmap``: the same functions then run on plain autograd (faster).
    """

    eager: bool = False  # inner gradients by plain autograd (one victim, no vmap) or by torch.func

    def __init__(
        self,
        obs: Observation,
        *,
        device: torch.device,
        dtype: torch.dtype,
        distance: str = "cosine",
        ghost: bool = True,
        layer_weights: str = "equal",
        bn_prior: float = 0.0,
    ) -> None:
        check_layer_weights(layer_weights)
        if layer_weights != "equal" and distance != "cosine":
            raise ConfigError(f"layer_weights {layer_weights!r} applies to the cosine distance only, not {distance!r}")
        model = obs.build_model().to(device=device, dtype=dtype)
        replace_all_batch_norm_modules_(model)  # batch statistics of the victim's own batch, no running stats
        model.train()
        for _, site in dropout_sites(model):
            site.eval()  # no mask given = dropout off (the eval-mode attacker); masks come as buffers
        self.bn_prior = bn_prior
        self._bn_inputs: dict[str, Tensor] | None = None
        self.bn_layers: list[str] = []
        if bn_prior > 0:
            self.bn_layers = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if not self.bn_layers:
                raise ConfigError(f"bn_prior needs a model with BatchNorm; {obs.model_name!r} has none")
            for name, module in model.named_modules():
                if name in self.bn_layers:
                    module.register_forward_pre_hook(self._bn_hook(name))
        self.model = model
        self.distance = distance
        self.layer_weights = layer_weights
        self.steps = obs.step_indices()
        self.single = obs.local_steps == 1
        self.lr = obs.lr
        self.param_names = [n for n, _ in model.named_parameters()]
        self.buffers = {k: v for k, v in model.named_buffers() if not k.endswith(".mask")}
        self.sites = [f"{name}.mask" for name, _ in dropout_sites(model)]
        self._tap: _Tap | None = None
        self.linear: dict[str, nn.Linear] = {}
        if ghost and self.single:
            owners: dict[int, int] = {}  # a parameter shared by two modules (tied weights) sums two
            for m in model.modules():  # layers' gradients: no single layer's Gram matrices give it
                for p in m.parameters(recurse=False):
                    owners[id(p)] = owners.get(id(p), 0) + 1
            linear = {
                n: m
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and all(owners[id(p)] == 1 for p in m.parameters(recurse=False))
            }
            shapes, calls = self._linear_out_shapes(obs, linear)
            self.linear = {
                n: m for n, m in linear.items()
                if calls.get(n) == 1 and ghost_pays(_rows(shapes[n], m.out_features), m.in_features, m.out_features)
            }  # fmt: skip
            for name, module in self.linear.items():
                module.register_forward_hook(self._hook(name))
            self._lin_params = {f"{n}.{p}" for n, m in self.linear.items() for p, _ in m.named_parameters()}
            self._out_shapes = {n: shapes[n] for n in self.linear}

    @property
    def _grad(self) -> Callable:
        return eager_grad if self.eager else grad

    # ---- the client ------------------------------------------------------------------
    def train_loss(self, params: Params, x: Tensor, y: Tensor, masks: dict[str, Tensor]) -> Tensor:
        """The client's mean cross-entropy on one batch with the given dropout masks."""
        out = functional_call(self.model, {**params, **self.buffers, **masks}, (x,))
        return F.cross_entropy(out, y)

    def simulate(self, params: Params, x: Tensor, y: Tensor, masks: dict[str, Tensor]) -> Params:
        """The update the client would send for inputs ``x`` (n, C, H, W) and labels ``y`` (n,).

        One step: the gradient. Several: the unrolled SGD delta ``w_after - w_before``.
        ``masks[site]`` has shape (local_steps, batch_size, *site).
        """
        if self.single:
            idx = self.steps[0]
            return self._grad(self.train_loss)(params, x[idx], y[idx], {k: m[0] for k, m in masks.items()})
        current = params
        for s, idx in enumerate(self.steps):
            g = self._grad(self.train_loss)(current, x[idx], y[idx], {k: m[s] for k, m in masks.items()})
            current = {k: current[k] - self.lr * g[k] for k in current}
        return {k: current[k] - params[k] for k in params}

    # ---- the distance ----------------------------------------------------------------
    def pieces(
        self, params: Params, x: Tensor, y: Tensor, masks: dict[str, Tensor], target: Params
    ) -> tuple[Tensor, Tensor]:
        """``(<u, target>, |u|^2)`` for the simulated update ``u`` (ghost path where it applies)."""
        if self.linear:
            return self._ghost_pieces(params, x, y, masks, target)
        update = self.simulate(params, x, y, masks)
        dot = cast(Tensor, sum((update[k] * target[k]).sum() for k in update))
        norm2 = cast(Tensor, sum(_weight(target, k) * (update[k] * update[k]).sum() for k in update))
        return dot, norm2

    def loss(self, params: Params, x: Tensor, y: Tensor, masks: dict[str, Tensor], target: Params) -> Tensor:
        """Gradient distance (plus the BatchNorm prior when on); ``target`` comes from :meth:`prepare_target`."""
        dot, norm2 = self.pieces(params, x, y, masks, target)
        if self.distance == "cosine":
            out = 1.0 - dot / norm2.clamp_min(1e-30).sqrt()
        else:
            out = norm2 - 2.0 * dot + target["__norm2__"]
        if self.bn_prior > 0:
            out = out + self.bn_prior * self.bn_distance(params, x, masks, target)
        return out

    def bn_distance(self, params: Params, x: Tensor, masks: dict[str, Tensor], target: Params) -> Tensor:
        """GradInversion's BatchNorm prior (Yin et al., CVPR 2021): ``sum_l |mu_l(x) - mu_l|_2 +
        |var_l(x) - var_l|_2`` over the BatchNorm layers, against the client's batch statistics
        read from its one-step update (:mod:`attacks.inversion.batchnorm`) rather than the global
        running statistics GradInversion uses."""
        idx = self.steps[0]
        self._bn_inputs = {}
        try:
            functional_call(self.model, {**params, **self.buffers, **{k: m[0] for k, m in masks.items()}}, (x[idx],))
            inputs = self._bn_inputs
        finally:
            self._bn_inputs = None
        total = x.new_zeros(())
        for name in self.bn_layers:
            a = inputs[name]
            dims = [0, *range(2, a.dim())]
            total = total + (a.mean(dims) - target[BN_MEAN_KEY + name]).norm()
            total = total + (a.var(dims) - target[BN_VAR_KEY + name]).norm()
        return total

    def _bn_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            if self._bn_inputs is not None:
                self._bn_inputs[name] = inputs[0]

        return hook

    def prepare_target(self, obs: Observation, device: torch.device, dtype: torch.dtype) -> Params:
        """The observed update as the quantity :meth:`simulate` returns (unit norm for cosine).

        A one-step delta ``-lr * g`` is turned back into the gradient ``g``. For the L2 distance
        the target's squared norm rides along under the key ``"__norm2__"``. With balanced layer
        weights each tensor comes pre-multiplied by its squared weight ``w2_k = 1 / |t_k|^2`` (0 for
        an all-zero tensor, which carries no direction), and ``w2_k`` rides along under
        ``WEIGHT_KEY + k`` for the attacker's norm.
        """
        scale = -1.0 / obs.lr if (obs.kind == "delta" and self.single) else 1.0
        target = {k: obs.update[k].to(device=device, dtype=dtype) * scale for k in self.param_names}
        if self.layer_weights == "balanced":
            w2 = {k: _inverse_square_norm(t) for k, t in target.items()}
            norm2 = cast(Tensor, sum(w2[k] * (t * t).sum() for k, t in target.items()))
            weighted = {k: w2[k] * t / norm2.sqrt() for k, t in target.items()}
            return {**weighted, **{WEIGHT_KEY + k: w for k, w in w2.items()}, **self._bn_target(obs, device, dtype)}
        bn = self._bn_target(obs, device, dtype)
        norm2 = cast(Tensor, sum((t * t).sum() for t in target.values()))
        if self.distance == "cosine":
            return {**{k: t / norm2.sqrt() for k, t in target.items()}, **bn}
        return {**target, "__norm2__": norm2, **bn}

    def _bn_target(self, obs: Observation, device: torch.device, dtype: torch.dtype) -> Params:
        """The client's BatchNorm batch statistics, when the prior is on (else nothing)."""
        if self.bn_prior <= 0:
            return {}
        from attacks.inversion.batchnorm import client_batch_statistics

        stats = client_batch_statistics(obs)
        out = {}
        for name, s in stats.items():
            out[BN_MEAN_KEY + name] = s.mean.to(device=device, dtype=dtype)
            out[BN_VAR_KEY + name] = s.var.to(device=device, dtype=dtype)
        return out

    # ---- ghost inner products for fully connected layers ---------------------------
    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
            tap = self._tap
            if tap is None:
                return None
            tap.acts[name] = inputs[0]
            return output + tap.eps[name]

        return hook

    def _linear_out_shapes(
        self, obs: Observation, linear: dict[str, nn.Linear]
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
        """Output shape of each fully connected layer in one client batch, and how often it runs."""
        shapes: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = {}
        hooks = [m.register_forward_hook(_shape_hook(shapes, calls, n)) for n, m in linear.items()]
        p = next(self.model.parameters())
        with torch.no_grad():
            self.model(torch.zeros(len(self.steps[0]), *obs.in_shape, device=p.device, dtype=p.dtype))
        for h in hooks:
            h.remove()
        return shapes, calls

    def _ghost_pieces(
        self, params: Params, x: Tensor, y: Tensor, masks: dict[str, Tensor], target: Params
    ) -> tuple[Tensor, Tensor]:
        idx = self.steps[0]
        xb, yb, mb = x[idx], y[idx], {k: m[0] for k, m in masks.items()}
        fixed = {k: v for k, v in params.items() if k in self._lin_params}
        other = {k: v for k, v in params.items() if k not in self._lin_params}
        ref = x

        def loss_with_taps(other: Params, eps: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            self._tap = _Tap(eps)
            try:
                out = functional_call(self.model, {**fixed, **other, **self.buffers, **mb}, (xb,))
                acts = self._tap.acts
            finally:
                self._tap = None
            return F.cross_entropy(out, yb), acts

        eps0 = {n: ref.new_zeros(s) for n, s in self._out_shapes.items()}
        (g_other, dz), acts = self._grad(loss_with_taps, argnums=(0, 1), has_aux=True)(other, eps0)
        dot = ref.new_zeros(())
        norm2 = ref.new_zeros(())
        for name, module in self.linear.items():
            a = acts[name].reshape(-1, module.in_features)
            d = dz[name].reshape(-1, module.out_features)
            dot = dot + (d * (a @ target[f"{name}.weight"].T)).sum()
            norm2 = norm2 + _weight(target, f"{name}.weight") * ((d @ d.T) * (a @ a.T)).sum()
            if module.bias is not None:
                gb = d.sum(0)
                dot = dot + (gb * target[f"{name}.bias"]).sum()
                norm2 = norm2 + _weight(target, f"{name}.bias") * (gb * gb).sum()
        for k, g in g_other.items():
            dot = dot + (g * target[k]).sum()
            norm2 = norm2 + _weight(target, k) * (g * g).sum()
        return dot, norm2


def _weight(target: Params, key: str) -> Tensor | float:
    """The squared layer weight of parameter ``key`` (1 unless the target carries weights)."""
    return target.get(WEIGHT_KEY + key, 1.0)


def _inverse_square_norm(t: Tensor) -> Tensor:
    n2 = (t * t).sum()
    return torch.where(n2 > 0, 1.0 / n2.clamp_min(torch.finfo(t.dtype).tiny), torch.zeros_like(n2))


def ghost_pays(rows: int, fan_in: int, fan_out: int) -> bool:
    """Whether a fully connected layer's ghost inner products cost less than its gradient.

    The ghost path builds two ``rows x rows`` Gram matrices (``rows^2 (fan_in + fan_out)``
    multiply-adds); the plain path materialises the ``fan_in x fan_out`` weight gradient and
    passes over it several times (dot product, norm, and the same again backwards). The rule
    keeps the ghost path where the Gram matrices are the smaller work: one-example MLP layers
    (rows 1), not the ViT's token-wise layers (rows = batch x 65 tokens); benchmarks/
    inversion_ghost.py times both paths."""
    return rows * rows * (fan_in + fan_out) <= fan_in * fan_out


def _rows(shape: tuple[int, ...], features: int) -> int:
    """How many rows (examples x tokens) a layer with output ``shape`` processes."""
    return int(torch.Size(shape).numel()) // features


def _shape_hook(shapes: dict[str, tuple[int, ...]], calls: dict[str, int], name: str):
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        shapes[name] = tuple(output.shape)
        calls[name] = calls.get(name, 0) + 1

    return hook


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation: mean absolute difference of neighbouring pixels (IG's prior)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


MASK_PENALTIES = ("abs", "square")


def mask_regularizer(masks: dict[str, Tensor], p: float, penalty: str = "abs") -> Tensor:
    """DIA's mask prior: sum over sites of |mean drop rate - p| (Scheliga et al., AAAI 2023, as
    the authors' code computes it), or its square (``penalty="square"``, smooth at the target)."""
    gaps = [(1.0 - m).mean() - p for m in masks.values()]
    terms = [g.abs() if penalty == "abs" else g**2 for g in gaps]
    return torch.stack(terms).sum() if terms else torch.zeros(())
