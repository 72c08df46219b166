"""Cells that should share round 0 but do not: reported per dataset and seed with the devices."""
import json

from conftest import PROTOCOL, curve, write_run

from analysis.load import load_results

XEON = {"device": "cpu", "threads": 1, "bf16_autocast": True, "gpu": None,
        "cpu": {"model": "Intel Xeon Platinum 8481C", "family_model_stepping": "6/143/8",
                "kernel_flags": ["avx2", "avx512f", "avx512_bf16", "amx_bf16"],
                "torch_capability": "AVX512"}}
EPYC = {"device": "cpu", "threads": 1, "bf16_autocast": False, "gpu": None,
        "cpu": {"model": "AMD EPYC 7B13", "family_model_stepping": "25/1/0",
                "kernel_flags": ["avx2"], "torch_capability": "AVX2"}}


def _meta(folder, device=None):
    meta = {"host": "node-a", "versions": {}}
    if device is not None:
        meta["device"] = device
    (folder / "meta.json").write_text(json.dumps(meta))


def _set_round0(folder, **fields):
    lines = (folder / "records.jsonl").read_text().splitlines()
    first = {**json.loads(lines[0]), **fields}
    (folder / "records.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")


def _round0_problems(root):
    return [p for p in load_results(root).problems if "round 0" in p]


def test_cells_sharing_round_0_agree_across_methods_and_settings(tmp_path):
    for m, setting in (("entropy", "al"), ("cal", "al"), ("st", "ssal"), ("entropy", "ssal")):
        _meta(write_run(tmp_path, m, "trec", setting, 0, curve(0.8, 0)), XEON)
    assert _round0_problems(tmp_path) == []


def test_a_round_0_that_differs_is_reported_with_the_devices(tmp_path):
    old = write_run(tmp_path, "entropy", "trec", "al", 1, curve(0.8, 1))
    _meta(old)  # written before meta.json named the device
    _meta(write_run(tmp_path, "cal", "trec", "al", 1, curve(0.8, 1)), XEON)
    other = write_run(tmp_path, "st", "trec", "ssal", 1, curve(0.8, 1))
    _meta(other, EPYC)
    _set_round0(other, test_acc=0.614, test_f1=0.614)
    _meta(write_run(tmp_path, "st", "sst2", "ssal", 1, curve(0.8, 1)), EPYC)  # alone: fine
    problems = _round0_problems(tmp_path)
    assert len(problems) == 1
    p = problems[0]
    assert p.startswith("trec seed 1: 3 cells that share round 0")
    assert "test acc 60.000%" in p and "test acc 61.400%" in p
    assert "Intel Xeon Platinum 8481C (6/143/8) [AVX512 avx512_bf16 amx], 1 thread, bf16" in p
    assert "meta.json predates device info; host node-a" in p
    assert f"in 1 run ({other.name}) on AMD EPYC 7B13 (25/1/0) [AVX2], 1 thread, fp32" in p


def test_one_device_behind_a_difference_is_called_no_hardware_difference(tmp_path):
    a = write_run(tmp_path, "entropy", "trec", "al", 0, curve(0.8, 0))
    b = write_run(tmp_path, "cal", "trec", "al", 0, curve(0.8, 0))
    for f in (a, b):
        _meta(f, XEON)
    _set_round0(b, dev_acc=0.7)
    (p,) = _round0_problems(tmp_path)
    assert "dev acc" in p and "test acc" not in p and "not a hardware difference" in p


def test_cells_with_other_initial_labels_or_round_0_config_are_not_compared(tmp_path):
    base = write_run(tmp_path, "entropy", "trec", "al", 0, curve(0.8, 0))
    labels = write_run(tmp_path, "cal", "trec", "al", 0, curve(0.8, 0))
    _set_round0(labels, queried_ids=[5, 6], test_acc=0.5)           # other initial labels
    write_run(tmp_path, "st", "trec", "ssal", 0, [0.55, 0.7, 0.8, 0.9],
              protocol={**PROTOCOL, "lr": 1e-3})                     # other round-0 training
    write_run(tmp_path, "bald", "trec", "al", 0, [0.58, 0.7, 0.8, 0.9],
              protocol={**PROTOCOL, "budget": 50})                   # acts after round 0 only
    for f in tmp_path.iterdir():
        _meta(f, XEON)
    # cal and st are not compared with anything; bald differs from entropy only in the budget,
    # which acts after round 0, so their different round-0 records are reported
    (p,) = _round0_problems(tmp_path)
    assert p.startswith("trec seed 0: 2 cells") and base.name in p and "bald_trec_al" in p
    assert labels.name not in p and "st_trec" not in p
