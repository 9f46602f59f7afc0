"""What an epsilon protects (its neighbouring relation) and against whom: the unit fedleak states it in.

The three units are different guarantees: fedleak never shows an epsilon without its unit, nor two
units in one table column. Every unit treats a client's number of examples as public (FedAvg weights
by it; dp-local's Poisson rate is set by it), as DP-FedAvg and Opacus do.
"""

PRIVACY_UNITS = {
    "record": "one training record of a client (add or remove), against anyone who sees the client's "
    "updates, the server included (dp-local)",
    "client-central": "one client (add or remove all of its data), against anyone who sees the released "
    "global models and cannot guess the run's --seed (the central noise is drawn from it: with the default "
    "seed 0, against nobody who knows fedleak); not against the server, which receives every update (dp-central)",
    "client-local": "one client (any two of its updates), against the server itself (ldp)",
}


def unit_label(unit: str) -> str:
    """``record``, ``client, central`` or ``client, local``: a unit as tables and lines show it."""
    return unit.replace("-", ", ")
