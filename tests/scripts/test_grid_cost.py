"""scripts/grid_cost.py in its seconds-long mode: a toy grid on the tiny backbone. Its figures
are timings, so only their bookkeeping is checked: one row per cell, each cell's step count is
the protocol's rule summed over its rounds, totals are the sum of the cells."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.training import training_steps

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "grid_cost.py"


def load_script():
    spec = importlib.util.spec_from_file_location("grid_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_weak_files(folder):
    """Rule votes for the toy topics: the gold label on 90% of rows, abstain elsewhere."""
    rng = np.random.default_rng(0)
    names = json.loads((folder / "labels.json").read_text())
    for split in ("train", "dev", "test"):
        rows = [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]
        for r in rows:
            r["weak_labels"] = [names.index(r["label"]) if rng.random() < 0.9 else -1]
        (folder / f"weak_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_quick_estimate_adds_up_the_protocol(toy_data, tiny_overrides, tmp_path, capsys):
    add_weak_files(toy_data)
    grid = tmp_path / "toy.yaml"
    grid.write_text(json.dumps({
        "name": "toy", "preset": "smoke", "datasets": [str(toy_data)], "seeds": [0, 1],
        "overrides": tiny_overrides,
        "blocks": [{"methods": ["entropy"], "settings": ["al"]},
                   {"methods": ["st"], "settings": ["ssal"], "overrides": {"threshold": 0.0}},
                   {"methods": ["st"], "settings": ["weak"], "overrides": {"threshold": 0.0},
                    "sweep": {"weak_labels": ["init", "keep"]}}]}))
    gc = load_script()
    out = gc.main([str(grid), "--quick", "--json", str(tmp_path / "cost.json"),
                   "--speedup", "2"])
    rows = out["cells"]
    assert len(rows) == 8                               # 4 cells x 2 seeds
    assert {r["setting"] for r in rows} == {"al", "ssal", "weak/init", "weak/keep"}
    costs = next(iter(out["costs"].values()))
    assert costs["methods"]["st"]["pseudo"] > 0 and costs["methods"]["entropy"]["step"] is None
    n_weak = costs["n_weak"]
    assert 100 < n_weak <= 120
    from benchmark.config import resolve
    for r in rows:
        setting, _, reading = r["setting"].partition("/")
        over = {**tiny_overrides, **({"weak_labels": reading} if reading else {})}
        cfg = resolve(r["method"], str(toy_data), r["seed"], setting, "smoke", over)
        sizes = gc.labelled_sizes(cfg, n_weak)
        pseudo = [t >= 1 and r["method"] == "st" for t in range(len(sizes))]
        assert r["steps"] == sum(training_steps(cfg, n, int(p)) for n, p in zip(sizes, pseudo))
        assert 0 < r["wall_x2"] < r["wall"]               # faster training, cheaper cell
    assert out["total_hours"]["wall"] == pytest.approx(sum(r["wall"] for r in rows) / 3600)
    assert json.loads((tmp_path / "cost.json").read_text())["total_hours"] == out["total_hours"]
    printed = capsys.readouterr().out
    assert "worker-hours (8 cells)" in printed and "training 2x faster" in printed
