"""How often each empirical epsilon bound is positive on scores with no membership signal.

True epsilon is 0 here, so a valid 95 % lower bound may be positive in at most 5 % of trials.
``all_records``: the best threshold's Clopper-Pearson bound, chosen and computed on the same
records (not valid); ``split_half``: fedleak's :func:`attacks.membership.metrics.
epsilon_lower_bound` (chosen on one half, bounded on the other). One JSON line per number of
attacks (the best of them is taken).

    .venv/bin/python benchmarks/epsilon_bound.py
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from attacks.membership.metrics import _eps_terms, clopper_pearson, epsilon_lower_bound, roc_counts


def best_on_all_records(scores: np.ndarray, members: np.ndarray, delta: float) -> float:
    tp, fp, _ = roc_counts(scores, members)
    _, fpr_hi = clopper_pearson(fp, int(fp[-1]))
    _, fnr_hi = clopper_pearson(tp[-1] - tp, int(tp[-1]))
    return float(max(0.0, *(t.max() for t in _eps_terms(fpr_hi, fnr_hi, delta))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--records", type=int, default=1000, help="half members, half non-members")
    args = ap.parse_args()
    members = np.arange(args.records) < args.records // 2
    for attacks in (1, 3):
        naive = split = 0
        for trial in range(args.trials):
            rng = np.random.default_rng(trial)
            sets = {f"a{k}": rng.normal(size=args.records) for k in range(attacks)}
            naive += max(best_on_all_records(s, members, 1e-5) for s in sets.values()) > 0
            split += epsilon_lower_bound(sets, members, delta=1e-5, seed=trial)[0] > 0
        print(
            json.dumps(
                {
                    "bench": "epsilon_bound",
                    "attacks": attacks,
                    "trials": args.trials,
                    "records": args.records,
                    "all_records_positive": naive,
                    "split_half_positive": split,
                }
            )
        )


if __name__ == "__main__":
    main()
