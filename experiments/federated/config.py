"""``SimulationConfig``: one federated experiment, shared by ``fedleak simulate``, grids and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from defenses import DefenseConfig
from fl.core.errors import ConfigError
from fl.core.keyvalues import parse_int_list
from fl.core.schema import above, at_least, check_bounds, setting, within
from fl.federation.capture import CAPTURE_MODES
from fl.federation.client_side import check_client_secret, settings_tag
from fl.federation.server import STRATEGIES
from fl.federation.settings import TrainSettings

SERVER_ATTACKS = (
    "none",
    "dlg",
    "idlg",
    "ig",
    "dia",
    "analytic",
)  # the curious server's inversions of a capture (oracle needs masks)
ENGINES = ("ray", "inline")
# settings that do not change what the clients compute (execution, the curious server's analysis)
NOT_TRAINING = frozenset(
    {
        "engine",
        "client_cpus",
        "client_gpus",
        "data_dir",
        "stop_after_round",
        "capture",
        "record_masks",
        "attack",
        "attack_clients",
        "attack_rounds",
        "attack_iters",
        "attack_options",
    }
)
PARTITIONS = ("iid", "dirichlet", "shards")


def unattackable_training(settings: TrainSettings) -> str | None:
    """Why the inversion attacks cannot model these client settings (None when they can).

    The attacker replays the client's local steps as plain SGD (Geiping et al., 2020); Adam's
    and momentum's optimizer state and FedProx's proximal term are not part of that model.
    """
    used = []
    if settings.optimizer != "sgd":
        used.append(f"--optimizer {settings.optimizer}")
    if settings.momentum:
        used.append(f"momentum {settings.momentum}")
    if settings.proximal_mu:
        used.append(f"--strategy fedprox --proximal-mu {settings.proximal_mu}")
    if not used:
        return None
    return (
        f"the inversion attacks support plain SGD clients only (--optimizer sgd, momentum 0, "
        f"--strategy fedavg); this run uses {', '.join(used)}"
    )


def update_shape(settings: TrainSettings, per_client: int, clients: int = 1) -> tuple[int, int, int]:
    """``(batch_size, local_steps, num_examples)`` of an update: ``clients`` clients of
    ``per_client`` examples each, summed (SecAgg+'s aggregate) or one (``clients`` 1). A batch
    larger than the data is the whole data."""
    batch = min(settings.batch_size or per_client, per_client)
    steps = settings.local_steps or settings.local_epochs * -(-per_client // batch)
    return batch * clients, steps, min(steps * batch, per_client) * clients


def unreplayable_steps(settings: TrainSettings, num_examples: int) -> str | None:
    """Why the inversion's replay cannot model a client's local steps over ``num_examples`` records
    (None when it can).

    The replay runs the client's steps over its examples in one fixed order with full batches
    (Geiping et al., 2020, for one epoch). A client that makes more than one pass reshuffles its
    data each epoch, and one whose steps reach a partial last batch trains it on fewer examples:
    neither is what the replay computes, so both are refused rather than mis-modelled.
    """
    n = num_examples
    batch, steps, _ = update_shape(settings, n)
    if steps * batch <= n:
        return None
    if steps > -(-n // batch):
        return (
            f"the inversion attacks replay one pass over a client's data in a fixed order, but {steps} local "
            f"steps of batch {batch} over {n} examples make several passes, reshuffled each time; use "
            f"--local-steps <= {n // batch}"
        )
    return (
        f"the inversion attacks replay full batches, but a client with {n} examples and batch {batch} trains "
        f"a last batch of {n % batch}; use --local-steps <= {n // batch} or a batch size that divides {n}"
    )


def check_attack_options(attack: str, options: Mapping[str, Any]) -> None:
    """Refuse attack options the curious server's attack does not take (one line)."""
    if attack == "none":
        raise ConfigError(f"attack setting {next(iter(options))!r} needs an --attack to apply to")
    if taken := sorted({"iters", "seed"} & set(options)):
        raise ConfigError(f"--attack-option {taken[0]}=... is set by --attack-iters / --seed, not as an attack option")
    import attacks.inversion  # noqa: F401  (registration)
    from attacks.inversion.base import attack_config, check_applies

    for name in options:
        check_applies(name, (attack,))
    attack_config(attack, None, **options)


@dataclass(frozen=True)
class SimulationConfig:
    """A federation, its defense and the curious server's attack (CLI option names in comments)."""

    dataset: str = setting("mnist", help="mnist, fmnist, cifar10, cifar100 or sample.")
    model: str = setting(
        "2nn",
        help="A model of `fedleak models` (2nn: FedAvg's MNIST MLP, trains in a few rounds; mlp: the DIA paper's).",
    )
    model_options: dict[str, Any] = setting(
        factory=dict,
        help="Model option, e.g. bias=true or width=32 (repeatable; see `fedleak models`).",
        flag="--model-option",
    )
    norm: str | None = setting(
        None, help="Normalisation variant (group: the DP-ready one).", choices=("batch", "group", "none")
    )
    clients: int = setting(10, help="Virtual clients (Flower SuperNodes).", bounds=at_least(1))
    fraction: float = setting(1.0, help="Share of clients sampled per round.", bounds=within(0, 1, low_open=True))
    rounds: int = setting(3, help="Federated rounds.", bounds=at_least(1))
    client_examples: int = setting(0, help="Cap on each client's partition (0 = all of it).", bounds=at_least(0))
    partition: str = setting("iid", help="How the records are dealt to the clients.", choices=PARTITIONS)
    alpha: float = setting(0.5, help="Dirichlet concentration (non-IID when small).", bounds=above(0))
    strategy: str = setting("fedavg", help="Server strategy (fedprox: with --proximal-mu).", choices=STRATEGIES)
    train: TrainSettings = field(default_factory=TrainSettings)  # the clients' local training
    defense: DefenseConfig = field(default_factory=DefenseConfig)  # --defense and its parameters
    attack: str = setting(
        "none", help="The curious server's inversion of the attacked clients' updates.", choices=SERVER_ATTACKS
    )
    attack_clients: int = setting(
        0, help="Clients attacked per round (the command line's default: 1 with --attack).", bounds=at_least(0)
    )
    attack_rounds: tuple[int, ...] = setting(
        (), help="Comma-separated rounds to attack (default: first and last).", parse=parse_int_list
    )
    attack_iters: int = setting(200, help="Optimization steps per reconstruction.", bounds=at_least(1))
    attack_options: dict[str, Any] = setting(
        factory=dict,
        help="Attack setting, e.g. layer_weights=balanced or mask_step_size=0.3 (repeatable; the fields of the "
        "attack's config, see docs/inversion.md).",
        flag="--attack-option",
    )
    capture: str = setting("attacked", help="Which clients' updates the server keeps.", choices=CAPTURE_MODES)
    record_masks: bool = setting(
        False,
        help="The clients also keep their dropout masks beside their truth, never sent (for `fedleak attack "
        "--attack oracle`, the bound DIA is read against).",
    )
    engine: str = setting(
        "ray",
        help="ray: Flower's simulation engine; inline: clients run one after another in this process (no Ray).",
        choices=ENGINES,
        app=False,
    )
    client_cpus: float = setting(1.0, help="Ray CPUs per client.", app=False, bounds=above(0))
    client_gpus: float = setting(0.0, help="Ray GPU share per client.", app=False, bounds=at_least(0))
    data_dir: str | None = setting(None, help="Dataset root (default $FEDLEAK_DATA).")
    # the global --seed: the server's randomness (partitions, sampling, initial weights, central noise)
    seed: int = setting(0, help="The server's seed.", cli=False)
    # --client-secret-file: the clients' secret (>= 32 hex digits) their keys derive from, for a
    # bit-identical rerun; given to the clients only, never in the server's config.json. None: a
    # fresh one from the OS, kept on the clients' side (RUN/clients/client_secret).
    client_secret: str | None = None
    stop_after_round: int = setting(
        0, help="Stop after this round as if killed (then --resume).", app=False, bounds=at_least(0)
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if taken := sorted({"dropout", "norm"} & set(self.model_options)):
            raise ConfigError(
                f"--model-option {taken[0]}=... is set by --{taken[0]} (or the dropout defense), not as a model option"
            )
        if self.partition not in PARTITIONS:
            raise ConfigError(f"unknown partition {self.partition!r}; valid choices: {', '.join(PARTITIONS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; valid choices: {', '.join(STRATEGIES)}")
        if self.attack not in SERVER_ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; valid choices: {', '.join(SERVER_ATTACKS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; valid choices: {', '.join(ENGINES)}")
        if self.capture not in CAPTURE_MODES:
            raise ConfigError(f"unknown capture mode {self.capture!r}; valid choices: {', '.join(CAPTURE_MODES)}")
        if self.attack_clients > self.clients_per_round:
            raise ConfigError(
                f"--attack-clients {self.attack_clients} exceeds the {self.clients_per_round} clients "
                f"sampled per round (--clients {self.clients} x --fraction {self.fraction})"
            )
        if self.attack != "none" and self.attack_clients < 1:
            raise ConfigError(f"--attack {self.attack} needs --attack-clients >= 1")
        if self.attack != "none" and self.capture == "none":
            raise ConfigError(f"--attack {self.attack} needs captured updates; use --capture attacked or all")
        if self.attack != "none" and (why := unattackable_training(self.train)):
            raise ConfigError(why)
        if self.attack_options:
            check_attack_options(self.attack, self.attack_options)
        bad = [r for r in self.attack_rounds if not 1 <= r <= self.rounds]
        if bad:
            raise ConfigError(f"--attack-rounds {bad} outside 1..{self.rounds}")
        if self.client_secret is not None:
            object.__setattr__(self, "client_secret", check_client_secret(str(self.client_secret)))

    @property
    def clients_per_round(self) -> int:
        return max(1, int(self.clients * self.fraction))

    @property
    def rounds_attacked(self) -> tuple[int, ...]:
        if self.attack == "none":
            return ()
        return tuple(sorted(set(self.attack_rounds or (1, self.rounds))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def server_dict(self) -> dict[str, Any]:
        """What the server may know of the run (its ``config.json``): everything but the clients' secret."""
        return {k: v for k, v in self.to_dict().items() if k != "client_secret"}

    def settings_tag(self) -> str:
        """The public digest of the settings that shape what the clients compute; client keys mix it in.

        Left out: how the run executes and what the server does with the updates (``NOT_TRAINING``),
        so the same federation run on another engine or attacked otherwise gets the same clients.
        """
        return settings_tag({k: v for k, v in self.server_dict().items() if k not in NOT_TRAINING})

    def partition_tag(self) -> str:
        """The public digest of how the clients' partitions are dealt (a node's data file carries it)."""
        keys = ("dataset", "clients", "client_examples", "partition", "alpha", "seed")
        return settings_tag({k: v for k, v in self.server_dict().items() if k in keys})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulationConfig:
        """Build from a scenario table or ``config.json``; unknown keys are errors."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown simulation option {', '.join(map(repr, unknown))}; valid options: {', '.join(known)}"
            )
        values = dict(data)
        if isinstance(values.get("train"), Mapping):
            values["train"] = TrainSettings(**values["train"])
        if isinstance(values.get("defense"), Mapping):
            values["defense"] = DefenseConfig.from_dict(values["defense"])
        if "attack_rounds" in values:
            values["attack_rounds"] = tuple(values["attack_rounds"])
        return cls(**values)

    def with_defense(self, name: str) -> SimulationConfig:
        """The same federation under another defense (``--baseline`` runs ``none``)."""
        return replace(self, defense=replace(self.defense, name=name))
