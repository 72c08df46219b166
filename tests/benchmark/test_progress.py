"""Whole-run progress: the plan matches the steps trained, a terminal gets one bar for the run,
a log gets one line per round; the smoke preset stays a seconds-long first run; --help
documents every option of `run`; the offline path never imports `datasets`."""
import io
import math
import subprocess
import sys

import pytest

from benchmark.cli import SUBCOMMANDS
from benchmark.config import resolve
from benchmark.loop import run_experiment
from benchmark.progress import RunProgress, clock


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock():
    assert [clock(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]


@pytest.mark.parametrize("method,setting", [("entropy", "al"), ("actune", "ssal")])
def test_planned_steps_are_the_steps_trained(method, setting, toy_data, tiny_overrides,
                                             tmp_path):
    over = dict(tiny_overrides, min_steps=2, epochs=2, st_steps=5, rounds=3, threads=1)
    cfg = resolve(method, str(toy_data), 0, setting, "smoke", over)
    plan = RunProgress(cfg, 0, cfg["initial_size"], setting == "ssal", io.StringIO()).plan
    records = run_experiment(cfg, tmp_path, log=lambda *_: None, stream=io.StringIO())
    assert [plan[t][0] for t in range(4)] == [r["train"]["steps"] for r in records]
    if setting == "al":  # 2 epochs of batches of 8 over 12, 20, 28, 36 labels
        assert [r["train"]["steps"] for r in records] == [4, 6, 8, 10]
    else:                # round 0 on labels only; then max(st_steps=5, the AL count) (parity)
        assert [r["n_pseudo"] > 0 for r in records] == [False, True, True, True]
        assert [r["train"]["steps"] for r in records] == [4, 6, 8, 10]


def test_a_log_gets_one_line_per_round_and_a_terminal_one_bar(toy_data, tiny_overrides,
                                                              tmp_path):
    cfg = resolve("entropy", str(toy_data), 0, "al", "smoke", dict(tiny_overrides, threads=1))
    lines, log = [], io.StringIO()
    run_experiment(cfg, tmp_path / "a", log=lines.append, stream=log)
    assert log.getvalue() == ""                     # not a terminal: no bar
    assert [ln[:10] for ln in lines] == ["round  0/2", "round  1/2", "round  2/2"]
    assert all("elapsed" in ln and " steps, " in ln for ln in lines)
    assert "left" in lines[0] and lines[-1].endswith("~0:00 left)")

    term = FakeTerminal()
    lines = []
    run_experiment(cfg, tmp_path / "b", log=lines.append, stream=term)
    shown = term.getvalue()
    total = sum(max(1 * math.ceil(n / 8), 4) for n in (12, 20, 28))   # epochs=1, min_steps=4
    assert f"round 2/2 | steps {total}/{total} |" in shown and "100%" in shown
    assert "round 0/2 | steps 0/" in shown          # the whole run's total from the start
    assert len(lines) == 3                           # the round lines still go to the log


def test_smoke_preset_work_stays_small():
    """The README's first command (entropy on TREC, smoke) must stay a seconds-long run: its
    training steps, texts through training and texts through the encoder are pinned here."""
    cfg = resolve("entropy", "trec", 0, "al", "smoke")
    plan = RunProgress(cfg, 0, cfg["initial_size"], False, io.StringIO())
    assert plan.total_steps == 120 and plan.total_texts == 960     # 3 rounds x 40 steps x 8
    rounds = cfg["rounds"] + 1
    evals = sum(math.ceil(s / cfg["eval_every"]) for s, _ in plan.plan.values())
    forward_only = evals * cfg["dev_size"] + rounds * cfg["test_size"] \
        + cfg["rounds"] * cfg["pool_size"]
    assert forward_only == 12 * 100 + 3 * 200 + 2 * 300 == 2400
    assert cfg["max_length"] == 32
    ssal = resolve("st", "trec", 0, "ssal", "smoke")
    assert RunProgress(ssal, 0, ssal["initial_size"], True, io.StringIO()).total_texts == \
        40 * 8 + 2 * 40 * (8 + 16)   # parity: SSAL rounds train as long as AL's (40 steps)


def test_run_help_documents_every_option_with_its_default():
    import argparse

    parser = argparse.ArgumentParser()
    SUBCOMMANDS["run"][1].arguments(parser)
    text = parser.format_help()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        assert "(default:" in action.help or "(required)" in action.help, action.dest
    assert "(default: cpu)" in " ".join(text.split())
    assert "minutes" in parser.description


def test_offline_path_never_imports_datasets(toy_data, tiny_backbone, tmp_path):
    """`datasets` (with pyarrow and multiprocess) serves only the hub fallback."""
    code = f"""
import sys
from benchmark.cli import main
assert main(["run", "--method", "actune", "--dataset", {str(toy_data)!r}, "--setting", "ssal",
             "--preset", "smoke", "--out", {str(tmp_path / 'runs')!r},
             "--set", "backbone={tiny_backbone}", "--set", "pool_size=60", "--set", "rounds=1",
             "--set", "initial_size=6", "--set", "budget=4", "--set", "dev_size=10",
             "--set", "test_size=10", "--set", "min_steps=2", "--set", "st_steps=2",
             "--set", "threads=1"]) == 0
from analysis.__main__ import main as report
assert report(["report", {str(tmp_path / 'runs')!r}, "--out", {str(tmp_path / 'report')!r}]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "datasets")
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
