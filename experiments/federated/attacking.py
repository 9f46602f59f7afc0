"""Turn a captured update into an attack ``Observation``, attack it, and score against the truth.

The attacker's inputs come only from ``RUN_DIR/capture`` (what the server received); the
truth (``RUN_DIR/truth``) is read afterwards to score the reconstruction (PSNR/SSIM, and LPIPS
when its local weights are loaded, after optimal matching, as in Inverting Gradients, Geiping et
al., NeurIPS 2020).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attacks.inversion import dia, ig  # noqa: F401  (registration of "ig", "dia" and "oracle")
from attacks.inversion.base import attack_config, attack_cost, config_fields, invert_many
from attacks.inversion.cost import CostBudget, InversionCost
from attacks.inversion.metrics import label_accuracy, label_precision, match_subset, score
from attacks.inversion.observation import Observation
from experiments.federated.config import unattackable_training, unreplayable_steps, update_shape
from fl.core.errors import ConfigError, DataError
from fl.federation.capture import AGGREGATE, CapturedUpdate, CaptureStore

if TYPE_CHECKING:
    from attacks.inversion.lpips import LPIPS
    from experiments.federated.config import SimulationConfig
    from fl.federation.settings import ModelSpec


@dataclass(frozen=True)
class AttackOutcome:
    """One reconstruction and its scores (per image and mean)."""

    server_round: int
    client: int | str
    attack: str
    reconstruction: torch.Tensor
    truth: torch.Tensor
    scores: dict[str, list[float]]
    label_acc: float | None = None  # recovered labels against the true ones, as multisets
    part: str | None = None  # which part of the update was rebuilt, when not all of it (``max_images``)
    baseline_psnr: float | None = None  # a part's baseline: the update's mean image, scored the same way

    @property
    def psnr(self) -> float:
        return float(sum(self.scores["psnr"]) / len(self.scores["psnr"]))

    @property
    def ssim(self) -> float:
        return float(sum(self.scores["ssim"]) / len(self.scores["ssim"]))

    @property
    def lpips(self) -> float | None:
        """Mean LPIPS, or ``None`` when it was not scored (no weights given)."""
        per = self.scores.get("lpips")
        return float(sum(per) / len(per)) if per else None


def observation_from_capture(cap: CapturedUpdate, max_images: int = 0) -> Observation:
    """What the attacker knows: the global weights, the update, the settings it asked for.

    One plain SGD step (no momentum, not Adam) turns the weight delta into the exact mean
    gradient, ``g = -delta / lr``; otherwise the delta is inverted by unrolling local steps.

    ``max_images`` > 0 smaller than the images behind the update: the attacker rebuilds that many
    under the one-gradient approximation (FedAvg read as FedSGD): the update is taken for the mean
    gradient at the global weights, ``g = -delta / (lr * steps)``, of a batch of ``max_images``
    images, which ignores the weights' drift over the local steps; the images rebuilt stand for
    the update's examples and are scored against the ones they come closest to (:func:`part_attacked`).
    """
    s = cap.settings
    if why := unattackable_training(s):
        raise ConfigError(why)
    if why := unreplayable_steps(s, cap.num_examples // max(cap.num_clients, 1)):
        raise ConfigError(why)
    batch, steps, examples = capture_shape(cap)
    update = cap.parameter_update
    buffers = {k: v for k, v in cap.update.items() if k not in update}  # BatchNorm statistics, as received
    options = dict(cap.model.options) | ({"norm": cap.model.norm} if cap.model.norm else {})
    common = {
        "model_name": cap.model.name,
        "model_options": options,
        "in_shape": tuple(cap.model.in_shape),
        "num_classes": cap.model.num_classes,
        "dropout": cap.model.dropout,
        "weights_before": cap.weights_before,
        "batch_size": batch,
        "num_examples": examples,
        "buffer_update": buffers or None,
    }
    if 0 < max_images < examples:
        common.update(batch_size=max_images, num_examples=max_images, buffer_update=None)
        return Observation(**common, update={k: -v / (s.lr * steps) for k, v in update.items()}, kind="gradient")
    if steps == 1:
        return Observation(**common, update={k: -v / s.lr for k, v in update.items()}, kind="gradient")
    return Observation(**common, update=update, kind="delta", lr=s.lr, local_steps=steps)


def oracle_observation(
    store: CaptureStore, obs: Observation, server_round: int, client: int | str, train_labels: torch.Tensor | None
) -> Observation:
    """The oracle's view of a captured update: not an attack, but the bound DIA is read against.

    It is handed what only the client holds, from ``truth/``: its dropout masks for every step and
    example, and the true labels in the order it used them. A mask belongs to one example, so
    masks given with labels in another order (the server's recovered label multiset is unordered)
    would pair an example's mask with another's label.
    """
    if train_labels is None or client == AGGREGATE:
        raise ConfigError("the oracle needs one client's update and the training labels (it reads the client's truth)")
    if obs.dropout <= 0.0:
        raise ConfigError(f"the oracle needs a model with dropout, but {obs.model_name!r} has dropout 0")
    labels = true_images(store, server_round, client, train_labels)[: obs.num_examples]
    masks = store.true_masks(server_round, int(client))
    shape = (obs.local_steps, obs.batch_size)
    if len(labels) != obs.num_examples or any(tuple(m.shape[:2]) != shape for m in masks.values()):
        raise DataError(
            f"client {client}'s recorded masks or labels in round {server_round} do not match its update "
            f"({obs.local_steps} step(s) of batch {obs.batch_size}, {obs.num_examples} examples)"
        )
    return replace(obs, true_masks=masks, labels=labels)


def capture_shape(cap: CapturedUpdate) -> tuple[int, int, int]:
    """``(batch_size, local_steps, num_examples)`` of a captured update (the SecAgg+ aggregate looks
    like one client with every client's batch)."""
    return update_shape(cap.settings, cap.num_examples // max(cap.num_clients, 1), cap.num_clients)


def part_attacked(cap: CapturedUpdate, max_images: int) -> str | None:
    """What ``max_images`` rebuilds of the update ``cap`` (None: all of its images)."""
    batch, steps, examples = capture_shape(cap)
    if not 0 < max_images < examples:
        return None
    return (
        f"{max_images} of the update's {examples} images ({steps} local step(s) of batch {batch}), "
        "rebuilt under the one-gradient approximation and scored against the true images they match best"
    )


def planned_cost(
    cfg: SimulationConfig,
    model: ModelSpec,
    weights: dict[str, torch.Tensor],
    largest_client: int,
    *,
    secure_aggregation: bool,
    device: torch.device | str = "cpu",
) -> InversionCost | None:
    """What the per-round attack of ``cfg`` will cost, before the federation starts: the
    attacked clients of one round (their largest possible update; under SecAgg+ the one
    aggregate of every sampled client) times the attacked rounds; None for an attack that does
    not optimise."""
    victims, clients = (1, cfg.clients_per_round) if secure_aggregation else (cfg.attack_clients, 1)
    batch, steps, examples = update_shape(cfg.train, largest_client, clients)
    obs = Observation(
        model_name=model.name,
        model_options=dict(model.options) | ({"norm": model.norm} if model.norm else {}),
        in_shape=tuple(model.in_shape),
        num_classes=model.num_classes,
        dropout=model.dropout,
        weights_before=weights,
        update=weights,
        kind="gradient" if steps == 1 else "delta",
        lr=cfg.train.lr,
        local_steps=steps,
        batch_size=batch,
        num_examples=examples,
    )
    one = attack_cost(
        [obs] * victims, cfg.attack, _attack_config(cfg.attack, cfg.attack_options, iters=cfg.attack_iters), device
    )
    if one is None:  # an attack that does not optimise (analytic)
        return None
    rounds = len(cfg.rounds_attacked)
    return replace(one, seconds=one.seconds * rounds, rounds=rounds)


def _attack_config(attack: str, options: dict[str, Any] | None, **wanted: Any) -> Any:
    """``attack``'s config from the run's settings it has (``wanted``: iterations, seed) and options."""
    known = config_fields(attack)
    return attack_config(attack, None, **{k: v for k, v in wanted.items() if k in known}, **(options or {}))


def true_images(store: CaptureStore, server_round: int, client: int | str, images: torch.Tensor) -> torch.Tensor:
    """The examples behind a captured update (evaluation only), in the client's order of use
    (``images`` may be any per-example tensor of the training set, e.g. its labels)."""
    if client == AGGREGATE:  # the clients the sum holds (a client that trained but dropped out is not in it)
        idx = [store.true_indices(server_round, c) for c in store.summed_clients(server_round)]
        return torch.cat([images[torch.as_tensor(i)] for i in idx])
    return images[torch.as_tensor(store.true_indices(server_round, int(client)))]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (0: leave torch's setting), then restore.

    The inversion loop is many small ops (a client's batch through an MLP); with more than one
    thread each op waits on the others, which on a CPU shared with other jobs costs more than
    it saves (measured in docs/federation.md).
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def attack_captured(
    store: CaptureStore,
    targets: list[tuple[int, int | str]],
    attack: str,
    train_images: torch.Tensor,
    *,
    iters: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    options: dict[str, Any] | None = None,
    threads: int = 1,
    lpips: LPIPS | None = None,
    train_labels: torch.Tensor | None = None,
    progress: bool = False,
    budget: CostBudget | None = None,
    max_images: int = 0,
) -> list[AttackOutcome]:
    """Attack every ``(round, client)`` capture at once (one batched optimization where possible).

    Returns one scored outcome per target whose update holds at least one image (a DP-SGD client
    whose Poisson batches were all empty sent noise only: it is attacked but not scored).

    ``threads``: torch CPU threads during the optimization (see :func:`torch_threads`).
    ``lpips``: a loaded LPIPS model (:func:`attacks.inversion.lpips.load_lpips`) adds per-image
    LPIPS to the scores; ``None`` leaves it out. ``train_labels`` adds the label accuracy.
    ``progress``: a progress bar with the matching loss. An attack over ``budget`` (default:
    :meth:`CostBudget.from_env`) is refused before it starts. ``max_images`` > 0 rebuilds at most
    that many images of each update (:func:`observation_from_capture`); the outcome's ``part``
    says which, and only those are scored.
    """
    caps = [store.load(r, c) for r, c in targets]
    observations = [observation_from_capture(c, max_images) for c in caps]
    if attack == "oracle":
        if max_images:
            raise ConfigError(
                "the oracle rebuilds a whole update (its masks are the client's, step by step); drop --max-images"
            )
        observations = [
            oracle_observation(store, o, r, c, train_labels) for o, (r, c) in zip(observations, targets, strict=True)
        ]
    cfg = _attack_config(attack, options, iters=iters, seed=seed)
    with torch_threads(threads):
        results = invert_many(observations, attack, config=cfg, device=device, progress=progress, budget=budget)
    outcomes = []
    for (r, c), cap, res in zip(targets, caps, results, strict=True):
        examples = capture_shape(cap)[2]
        truth = true_images(store, r, c, train_images)[:examples]
        labels = None if train_labels is None else true_images(store, r, c, train_labels)[:examples]
        if not len(truth):  # a DP-SGD client's Poisson batches may all be empty: nothing to score
            continue
        part = part_attacked(cap, max_images)
        if part is None or len(res.inputs) >= len(truth):
            acc = None if labels is None else label_accuracy(res.labels, labels)
            outcomes.append(AttackOutcome(r, c, attack, res.inputs, truth, score(res.inputs, truth, lpips=lpips), acc))
            continue
        # a part: scored on the true images it matches best, which flatters any output, so the
        # outcome carries the same score of K copies of the update's mean image as the baseline;
        # labels are scored against the whole update's label multiset (pixel matching would pick
        # the true images whose labels the attack optimised for)
        chosen = match_subset(res.inputs, truth)
        mean = truth.mean(0, keepdim=True).expand(len(res.inputs), *truth.shape[1:])
        baseline = score(mean, truth[match_subset(mean, truth)])["psnr"]
        acc = None if labels is None else label_precision(res.labels, labels)
        outcomes.append(
            AttackOutcome(
                r,
                c,
                attack,
                res.inputs,
                truth[chosen],
                score(res.inputs, truth[chosen], lpips=lpips),
                acc,
                part,
                baseline_psnr=float(sum(baseline) / len(baseline)),
            )
        )
    return outcomes


def save_outcome_grid(outcome: AttackOutcome, path: str | Path) -> None:
    """PNG: the client's true images above the reconstructions (matched), each PSNR under its image."""
    from attacks.inversion.metrics import match
    from attacks.inversion.plots import save_grid

    rec = outcome.reconstruction[match(outcome.reconstruction, outcome.truth)]
    title = f"{outcome.attack} on round {outcome.server_round}, client {outcome.client}"
    if outcome.part:
        title += f"; {outcome.part.split(' (')[0]}"
    save_grid(path, outcome.truth, {outcome.attack: rec}, {outcome.attack: outcome.scores["psnr"]}, title=title)
