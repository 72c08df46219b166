"""Budget parity: self-training never trains its labelled set less than active learning does.

One rule (``benchmark.training.training_steps``) sets every round's step count; these tests hold
it to the protocol for every preset and every round of a 10-round schedule, the weak setting
in both readings included, and check that ``fine_tune`` trains and records what the rule says.
"""
import math

import numpy as np
import pytest

from benchmark.config import resolve
from benchmark.loop import run_experiment
from benchmark.presets import PRESETS
from benchmark.training import training_steps
from methods.base import Objective

N_WEAK = 4_800   # TREC's weakly-labelled texts: 95% of its 5,033 (the rules' coverage)


def labelled_passes(cfg: dict, n_labelled: int, n_pseudo: int) -> float:
    """What a round records: steps x labelled batch / labelled set (one labelled batch a step)."""
    return training_steps(cfg, n_labelled, n_pseudo) * cfg["batch_size"] / n_labelled


def schedule(cfg: dict, weak_labels: str | None = None) -> list[int]:
    """Labelled-set size of rounds 0..T: initial + t x budget, or the weak readings' sets."""
    T, b = cfg["rounds"], cfg["budget"]
    if weak_labels is None:
        return [cfg["initial_size"] + t * b for t in range(T + 1)]
    if weak_labels == "keep":           # weak labels stay; clean ones join (a few overlap)
        return [N_WEAK + t * b for t in range(T + 1)]
    return [N_WEAK] + [t * b for t in range(1, T + 1)]      # init: clean labels only after 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dataset", ["trec", "sst2"])
def test_ssal_never_gets_fewer_labelled_passes_than_al(preset, dataset):
    for setting, weak_labels in (("ssal", None), ("weak", "init"), ("weak", "keep")):
        over = {"rounds": 10} | ({"weak_labels": weak_labels} if weak_labels else {})
        ssal = resolve("st", dataset, 0, setting, preset, over)
        al = resolve("entropy", dataset, 0, "al" if setting == "ssal" else setting, preset, over)
        for n in schedule(ssal, weak_labels):
            with_pseudo = labelled_passes(ssal, n, n_pseudo=500)
            without = labelled_passes(al, n, n_pseudo=0)
            assert with_pseudo >= without, (preset, dataset, setting, weak_labels, n)
            assert training_steps(ssal, n, 500) >= ssal["st_steps"]  # B.4's floor stays


def test_the_rule_by_hand_in_the_cpu_preset():
    cpu = resolve("st", "trec", 0, "ssal", "cpu", {"epochs": 4})     # the study's old epochs
    # AL: 4 epochs of ceil(n / 8) batches, at least 60; SSAL: at least st_steps = 180
    assert [training_steps(cpu, n) for n in (100, 200, 1100)] == [60, 100, 552]
    assert [training_steps(cpu, n, 1) for n in (100, 200, 1100)] == [180, 180, 552]
    # before the rule, SSAL's 180 steps at 1,100 labels were 1.3 passes against AL's 4.0
    assert labelled_passes(cpu, 1100, 1) == pytest.approx(552 * 8 / 1100)
    weak = resolve("st", "trec", 0, "weak", "cpu", {"weak_labels": "keep", "epochs": 4})
    assert weak["max_steps"] == 552 and training_steps(weak, N_WEAK, 1) == 552
    now = resolve("st", "trec", 0, "ssal", "cpu")                   # 3 epochs
    assert [training_steps(now, n, 1) for n in (100, 600, 1100)] == [180, 225, 414]


class CountingObjective(Objective):
    """The default loss, counting its calls: a diagnostic that must reach the round's record."""

    def start(self, model):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return super().__call__(batch)

    def diagnostics(self):
        return {"loss_calls": self.calls}


def test_runs_train_and_record_what_the_rule_says(toy_data, tiny_overrides, tmp_path,
                                                  monkeypatch):
    """Real runs: SSAL (ST pseudo-labelling everything) against AL on the same label counts.
    With st_steps below the AL count (the old rule would have trained 2 steps), SSAL trains
    the AL count; the records carry the passes and the objective's diagnostics."""
    over = {**tiny_overrides, "epochs": 2, "st_steps": 2, "threshold": 0.0}
    monkeypatch.setattr("methods.base.Method.objective", lambda self, t, T: CountingObjective())
    ssal = run_experiment(resolve("st", str(toy_data), 0, "ssal", "smoke", over),
                          tmp_path / "ssal", log=lambda *_: None)
    al = run_experiment(resolve("random", str(toy_data), 0, "al", "smoke", tiny_overrides
                                | {"epochs": 2, "st_steps": 2}), tmp_path / "al",
                        log=lambda *_: None)
    for s, a in zip(ssal, al):
        n = s["n_train_labels"]
        assert n == a["n_train_labels"]
        expect = max(2 * math.ceil(n / 8), 4)        # epochs x batches, min_steps 4
        assert s["train"]["steps"] == a["train"]["steps"] == expect
        assert s["train"]["loss_calls"] == s["train"]["steps"]
        assert s["train"]["labelled_passes"] == pytest.approx(expect * 8 / n)
        assert s["train"]["labelled_passes"] >= a["train"]["labelled_passes"]
        if s["n_pseudo"]:
            bu = resolve("st", str(toy_data), 0, "ssal", "smoke", over)["batch_size_unlabelled"]
            assert s["train"]["pseudo_passes"] == pytest.approx(expect * bu / s["n_pseudo"])
        else:
            assert "pseudo_passes" not in s["train"]
    assert sum(r["n_pseudo"] > 0 for r in ssal) == 2
    # the pseudo-label set's class histogram, its hidden gold one and the pool's, per round
    for r in ssal[1:]:
        assert sum(r["pseudo_hist"]) == sum(r["pseudo_gold_hist"]) == r["n_pseudo"]
        assert sum(r["pool_gold_hist"]) == 120 and len(r["pool_gold_hist"]) == 3
        right = sum(min(p, g) for p, g in zip(r["pseudo_hist"], r["pseudo_gold_hist"]))
        assert right >= r["pseudo_acc"] * r["n_pseudo"] - 1e-9   # histograms bound accuracy
    assert np.all([r.get("pseudo_hist") is None for r in al])


def test_bf16_without_native_kernels_computes_forward_and_backward_on_fp32_units(
        toy_data, tiny_overrides, tmp_path, monkeypatch):
    """On a CPU without native bf16 a bf16 run's products, the backward's and inference's
    included, go through ``Bf16OnFp32Units`` (torch's own bf16 matmul there is a scalar loop);
    meta.json says so."""
    import json

    import torch

    from benchmark import backbones

    monkeypatch.setattr(backbones, "cpu_has_bf16", lambda: False)
    seen = set()
    dispatch = backbones.Bf16OnFp32Units.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        if func in self.OPS and any(getattr(a, "dtype", None) == torch.bfloat16 for a in args):
            seen.add((str(func), torch._C._current_graph_task_id() != -1))  # -1: not backward
        return dispatch(self, func, types, args, kwargs)

    monkeypatch.setattr(backbones.Bf16OnFp32Units, "__torch_dispatch__", spy)
    cfg = resolve("random", str(toy_data), 0, "al", "smoke", {**tiny_overrides, "amp": "bf16"})
    run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    assert {("aten.addmm.default", False), ("aten.mm.default", True),   # training
            ("aten.linear.default", False)} <= seen                    # inference mode
    [meta] = (tmp_path / "out").glob("*/meta.json")
    device = json.loads(meta.read_text())["device"]
    assert device["bf16_autocast"] is True and device["bf16_emulated"] is True
