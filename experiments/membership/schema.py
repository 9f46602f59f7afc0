"""The membership kind's schemas: every setting of ``MIAConfig`` (a black-box audit, central or of a
federation's global model) and of ``FederatedMIAConfig`` (the curious server's audit of captured
updates). ``fedleak mia``'s options and the scenario keys of ``[[membership]]`` blocks come from them.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from defenses import DefenseConfig
from experiments.membership.config import MEMBERSHIP_DEFENSE_SETTINGS, MEMBERSHIP_DEFENSES, MIAConfig
from experiments.membership.server_side import FederatedMIAConfig
from fl.core.schema import Schema, Setting, flat_settings, nested

NESTED = {"defense": DefenseConfig}
# Where a defense setting means more in an audit than DefenseConfig's help says.
AUDIT_HELP = {
    "name": "Defense of the target's (and the shadows') training: dropout; dp-local, DP-SGD (one record); "
    "dp-central, the server clips and noises client updates (one client; needs --clients).",
    "delta": "DP delta of dp-local/dp-central, and of the empirical epsilon every audit reports.",
    "noise_multiplier": "dp-local/dp-central: noise std / clipping bound (give it or --target-epsilon).",
    "target_epsilon": "dp-local/dp-central: epsilon budget of the whole run (or give --noise-multiplier).",
}


@cache
def membership_schema() -> Schema:
    """The black-box audit (``fedleak mia``, ``[[membership]]`` blocks): ``MIAConfig``'s settings
    with those of its nested ``DefenseConfig`` that the membership defenses read."""
    settings = []
    for s in flat_settings(MIAConfig, NESTED):
        if s.owner is DefenseConfig:
            if s.name not in MEMBERSHIP_DEFENSE_SETTINGS:
                continue
            s = replace(
                s, help=AUDIT_HELP.get(s.name, s.help), choices=MEMBERSHIP_DEFENSES if s.name == "name" else None
            )
        settings.append(s)
    return Schema("membership", tuple(settings), nested(MIAConfig, NESTED))


@cache
def server_side_schema() -> Schema:
    """The curious server's audit of a captured federation (``fedleak mia --federated``)."""
    return Schema("membership-server", flat_settings(FederatedMIAConfig, {}), nested(FederatedMIAConfig, {}))


def mia_settings() -> tuple[Setting, ...]:
    """``fedleak mia``'s settings: the black-box audit's, then the server-side audit's own.

    A setting of both (same name) is one option, so it must have one flag; the black-box one's
    help and default are shown.
    """
    black_box = membership_schema().by_name()
    server = server_side_schema().settings
    for s in server:
        if s.name in black_box and s.cli and s.flag != black_box[s.name].flag:
            raise TypeError(f"{s.name!r} is {black_box[s.name].flag} and {s.flag}: one option cannot be both")
    return (*black_box.values(), *(s for s in server if s.name not in black_box))
