"""Typed results: the rows tables are made of, and a stored result read back unchanged."""

from __future__ import annotations

import json
import math

from experiments.federated.results import FederationResult
from experiments.inversion.results import AttackSummary, InversionRun
from experiments.membership.results import MembershipResult
from fl.core.results import from_json
from fl.core.runs import atomic_write_json, to_jsonable


def _stored(obj: object) -> dict:
    return json.loads(json.dumps(to_jsonable(obj)))


def test_federation_result_rows_name_the_epsilon_by_its_unit_and_read_back() -> None:
    res = FederationResult(
        attack="dia", final_accuracy=0.5, final_loss=1.2, epsilon=3.0, epsilon_unit="client-central", delta=1e-5,
        rounds_done=3, wall_s=2.0, attack_psnr={1: 20.0, 3: 14.0}, failures={2: [4]},
    )  # fmt: skip
    rows = res.rows()
    assert rows[""] == {
        "final_accuracy": 0.5, "final_loss": 1.2, "wall_s": 2.0, "epsilon_client_central": 3.0, "delta": 1e-5,
    }  # fmt: skip
    assert rows["dia"] == {"psnr_mean": 17.0, "psnr_first": 20.0, "psnr_last": 14.0}
    assert from_json(FederationResult, _stored(res.to_json())) == res  # round keys come back as integers
    assert res.epsilon_text() == "3.00 per client, central (δ=1e-05)"
    plain = FederationResult("none", 0.9, 0.3, None, None, None, 3, 1.0)
    assert set(plain.rows()) == {""} and "delta" not in plain.rows()[""]


def test_federation_result_json_is_the_stored_file(tmp_path) -> None:
    """``to_json`` is what ``result.json`` holds, byte for byte as before (round keys as text, an
    exact reconstruction's PSNR as "inf")."""
    res = FederationResult("analytic", 0.5, 1.25, None, None, None, 2, 3.5, {2: math.inf, 1: 30.0}, {1: [0, 3]})
    assert res.to_json() == {
        "attack": "analytic", "final_accuracy": 0.5, "final_loss": 1.25, "epsilon": None, "epsilon_unit": None,
        "delta": None, "rounds_done": 2, "wall_s": 3.5, "attack_psnr": {"2": "inf", "1": 30.0},
        "failures": {"1": [0, 3]},
    }  # fmt: skip
    atomic_write_json(tmp_path / "result.json", {**res.to_json(), "history": []})
    assert (tmp_path / "result.json").read_text() == (
        '{\n  "attack": "analytic",\n  "attack_psnr": {\n    "1": 30.0,\n    "2": "inf"\n  },\n  "delta": null,\n'
        '  "epsilon": null,\n  "epsilon_unit": null,\n  "failures": {\n    "1": [\n      0,\n      3\n    ]\n  },\n'
        '  "final_accuracy": 0.5,\n  "final_loss": 1.25,\n  "history": [],\n  "rounds_done": 2,\n  "wall_s": 3.5\n}\n'
    )


def test_inversion_run_rows_are_labelled_and_an_exact_reconstruction_reads_back() -> None:
    exact = AttackSummary(
        attack="analytic", label="analytic", psnr_mean=math.inf, psnr_std=0.0, ssim_mean=1.0, mse_mean=0.0,
        label_acc=1.0, label_source="recovered", grad_loss_mean=0.0, iters=0, time_s=0.1,
        per_image={"psnr": [math.inf]},
    )  # fmt: skip
    dia = AttackSummary(
        attack="dia", label="dia (readout)", psnr_mean=20.0, psnr_std=1.0, ssim_mean=0.5, mse_mean=0.01,
        label_acc=0.5, label_source="recovered", grad_loss_mean=0.2, iters=10, time_s=3.0, lpips_mean=0.3,
    )  # fmt: skip
    run = InversionRun({"analytic": exact, "dia": dia})
    assert set(run.rows()) == {"analytic", "dia (readout)"}
    assert run.rows()["dia (readout)"]["lpips_mean"] == 0.3 and "lpips_mean" not in run.rows()["analytic"]
    stored = _stored(run.to_json())
    assert stored["analytic"]["psnr_mean"] == "inf" and "lpips_mean" not in stored["analytic"]
    assert {name: from_json(AttackSummary, v) for name, v in stored.items()} == run.attacks


def test_membership_result_rows_carry_the_client_level_auc() -> None:
    res = MembershipResult(
        train_accuracy=0.9, test_accuracy=0.7, epsilon=8.0, epsilon_unit="client-central", delta=1e-5,
        attacks={"lira": {"auc": 0.6, "tpr@1%": 0.02, "fitted": {"a": 0.3}}},
        client_level={"lira": {"auc": 0.95}}, target_run="runs/x/target", federation_accuracy=0.71,
    )  # fmt: skip
    rows = res.rows()
    assert rows[""]["epsilon_client_central"] == 8.0 and rows[""]["federation_accuracy"] == 0.71
    assert rows["lira"] == {"auc": 0.6, "tpr@1%": 0.02, "client_auc": 0.95}
    central = MembershipResult(0.9, 0.7, None, None, None, {"loss": {"auc": 0.55}})
    assert "target_run" not in central.to_json() and central.to_json()["epsilon"] is None
    assert from_json(MembershipResult, _stored(res.to_json())) == res
