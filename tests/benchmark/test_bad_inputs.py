"""Every bad input gets one ``error:`` line and exit code 2, before any run folder is written;
never a traceback. The table in docs/bad-inputs.md is generated from the cases below and
checked here, so it cannot go stale; after changing a message, regenerate it with

    ACTUNE_UPDATE_DOCS=1 python -m pytest tests/benchmark/test_bad_inputs.py

The cases run in a scratch folder holding the files they name; the machine counts as offline
(the hub probe answers "unreachable"), as on this project's machines.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-inputs.md"
RUN = ["benchmark", "run", "--method", "entropy", "--dataset", "toy", "--preset", "smoke",
       "--out", "runs"]
ACTUNE = ["benchmark", "run", "--method", "actune", "--setting", "ssal", "--dataset", "toy",
          "--preset", "smoke", "--out", "runs"]
GRID = {"methods": ["random"], "datasets": ["toy"], "preset": "smoke"}

# (what is wrong, the files it needs {name: content}, the command line)
CASES = [
    # --- preset keys: type and range, named --------------------------------------------------
    ("learning rate not a number", {}, RUN + ["--set", "lr=abc"]),
    ("learning rate zero", {}, RUN + ["--set", "lr=0"]),
    ("learning rate infinite", {}, RUN + ["--set", "lr=.inf"]),
    ("learning rate left empty", {}, RUN + ["--set", "lr="]),
    ("pool size not a number", {}, RUN + ["--set", "pool_size=abc"]),
    ("pool size negative", {}, RUN + ["--set", "pool_size=-5"]),
    ("rounds not an integer", {}, RUN + ["--set", "rounds=2.5"]),
    ("rounds negative", {}, RUN + ["--set", "rounds=-1"]),
    ("rounds zero", {}, RUN + ["--set", "rounds=0"]),
    ("budget zero", {}, RUN + ["--set", "budget=0"]),
    ("epochs not a number", {}, RUN + ["--set", "epochs=abc"]),
    ("threads not a number", {}, RUN + ["--set", "threads=abc"]),
    ("threads zero", {}, RUN + ["--set", "threads=0"]),
    ("dropout above 1", {}, RUN + ["--set", "dropout=1.5"]),
    ("warm-up fraction above 1", {}, RUN + ["--set", "warmup=2"]),
    ("batch size zero", {}, RUN + ["--set", "batch_size=0"]),
    ("max length too short", {}, RUN + ["--set", "max_length=1"]),
    ("evaluation period zero", {}, RUN + ["--set", "eval_every=0"]),
    ("amp not a mode", {}, RUN + ["--set", "amp=maybe"]),
    ("amp given a boolean", {}, RUN + ["--set", "amp=false"]),
    ("pooling not a mode", {}, RUN + ["--set", "pooling=max"]),
    ("boolean key given off (YAML 1.2 keeps it a word)", {}, RUN + ["--set", "save_features=off"]),
    ("unknown key", {}, RUN + ["--set", "lrr=1e-4"]),
    ("--set without =", {}, RUN + ["--set", "lr"]),
    ("seed negative", {}, RUN + ["--seed", "-1"]),
    ("seed not a number (argparse)", {}, RUN + ["--seed", "abc"]),
    ("device not a device", {}, RUN + ["--device", "gpu"]),
    # --- method parameters --------------------------------------------------------------------
    ("method parameter not a number", {}, ACTUNE + ["--set", "beta=abc"]),
    ("integer method parameter given a fraction", {}, ACTUNE + ["--set", "n_clusters=2.5"]),
    ("method parameter out of range (the method's own check)", {},
     ACTUNE + ["--set", "n_clusters=0"]),
    ("method parameter not among its choices", {}, ACTUNE + ["--set", "memory_bank=foo"]),
    ("boolean method parameter given off", {}, ACTUNE + ["--set", "region_sampling=off"]),
    # --- names --------------------------------------------------------------------------------
    ("unknown method", {}, ["benchmark", "run", "--method", "entropi", "--dataset", "toy"]),
    ("unknown preset", {}, RUN + ["--preset", "gpu"]),
    ("unknown setting", {}, RUN + ["--setting", "semi"]),
    ("method not run in that setting", {}, RUN[:2] + ["--method", "st", "--setting", "al"]
     + RUN[4:]),
    # --- backbones (offline: at once, not after a minute of hub retries) ---------------------
    ("backbone unknown, offline", {}, RUN + ["--set", "backbone=nonexistent-model"]),
    ("backbone folder missing", {}, RUN + ["--set", "backbone=./models/missing"]),
    ("backbone folder without a model", {"models/empty/": None},
     RUN + ["--set", "backbone=./models/empty"]),
    ("backbone left empty", {}, RUN + ["--set", "backbone="]),
    # --- datasets -----------------------------------------------------------------------------
    ("registered dataset, --data-dir forgotten, offline", {},
     ["benchmark", "run", "--method", "entropy", "--dataset", "trec", "--out", "runs"]),
    ("data directory missing", {},
     ["benchmark", "run", "--method", "entropy", "--dataset", "trec", "--data-dir", "nowhere",
      "--out", "runs"]),
    ("dataset not in the data directory, offline", {},
     ["benchmark", "run", "--method", "entropy", "--dataset", "agnews", "--data-dir", ".",
      "--out", "runs"]),
    ("dataset file missing", {}, RUN[:5] + ["missing.csv"] + RUN[6:]),
    ("dataset folder missing", {}, RUN[:5] + ["./missing_folder"] + RUN[6:]),
    ("dataset neither a name nor a path", {}, RUN[:5] + ["mydata"] + RUN[6:]),
    ("CSV without a label column", {"nolabel.csv": "text,y\nsome text,a\nmore text,b\n"},
     RUN[:5] + ["nolabel.csv"] + RUN[6:]),
    ("CSV with an empty text", {"blank.csv": "text,label\nsome text,a\n  ,b\n"},
     RUN[:5] + ["blank.csv"] + RUN[6:]),
    ("labels.json not JSON", {"badlabels/labels.json": "[a, b",
                              "badlabels/train.jsonl": '{"text": "x", "label": "a"}\n'},
     RUN[:5] + ["badlabels"] + RUN[6:]),
    ("weak setting on a dataset without rule votes", {},
     ACTUNE[:5] + ["weak"] + ACTUNE[6:]),
    ("budget larger than the pool", {}, RUN + ["--set", "budget=100"]),
    ("output path is a file", {"afile": "x"}, RUN[:-1] + ["afile"]),
    # --- grids --------------------------------------------------------------------------------
    ("grid file missing", {}, ["benchmark", "grid", "launch", "missing.yaml"]),
    ("grid file not YAML", {"g.yaml": "methods: [random\n"}, ["benchmark", "grid", "status",
                                                              "g.yaml"]),
    ("grid setting `all` (no such setting)", {"g.yaml": {**GRID, "settings": ["all"]}},
     ["benchmark", "grid", "launch", "g.yaml", "--executor", "local", "--out", "runs"]),
    ("grid with an unknown key under local:", {"g.yaml": {**GRID, "local": {"worker": 2}}},
     ["benchmark", "grid", "launch", "g.yaml", "--executor", "local", "--out", "runs"]),
    ("grid with zero local workers", {"g.yaml": {**GRID, "local": {"workers": 0}}},
     ["benchmark", "grid", "launch", "g.yaml", "--executor", "local", "--out", "runs"]),
    ("--workers 0", {"g.yaml": GRID},
     ["benchmark", "grid", "launch", "g.yaml", "--executor", "local", "--workers", "0",
      "--out", "runs"]),
    ("grid seed not a number", {"g.yaml": {**GRID, "seeds": ["a"]}},
     ["benchmark", "grid", "status", "g.yaml", "--out", "runs"]),
    ("grid with an unknown top-level key", {"g.yaml": {**GRID, "seed": [0]}},
     ["benchmark", "grid", "status", "g.yaml"]),
    ("grid with an unknown slurm key", {"g.yaml": {**GRID, "slurm": {"gpus": 1}}},
     ["benchmark", "grid", "launch", "g.yaml", "--dry-run"]),
    ("grid naming no datasets", {"g.yaml": {"methods": ["random"], "preset": "smoke"}},
     ["benchmark", "grid", "status", "g.yaml"]),
    ("grid whose cells all fail", {"g.yaml": {**GRID, "datasets": ["nolabel.csv"]},
                                   "nolabel.csv": "text,y\nsome text,a\n"},
     ["benchmark", "grid", "launch", "g.yaml", "--executor", "local", "--workers", "1",
      "--out", "runs"]),
    # --- analysis -----------------------------------------------------------------------------
    ("report on a folder that does not exist", {}, ["analysis", "report", "missing_results"]),
    ("--family without =", {"results/": None},
     ["analysis", "report", "results", "--family", "foo"]),
    ("--family with an unknown family", {"results/": None},
     ["analysis", "report", "results", "--family", "random=supervised"]),
]
# Cases that get as far as writing run folders (their cells run, and fail), and cases whose
# run starts (its header line printed) before the fault shows.
WRITES = {"grid whose cells all fail"}
PRINTS = WRITES | {"output path is a file"}


@pytest.fixture
def scratch(tmp_path, toy_data, monkeypatch):
    """An offline machine, in a folder holding the toy dataset (``toy/``)."""
    from benchmark.loop import Run

    assert toy_data == tmp_path / "toy"
    monkeypatch.chdir(tmp_path)
    for var in ("ACTUNE_DATA", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    try:
        from benchmark import hub
        monkeypatch.setattr(hub, "reachable", lambda: False)
    except ImportError:  # before the offline check existed
        pass

    def no_work(self):
        raise AssertionError("a bad input got past the checks and started a run")
    monkeypatch.setattr(Run, "_run", no_work)
    return tmp_path


def run_case(files: dict, argv: list[str], capsys) -> tuple[int, str, str]:
    from analysis.__main__ import main as analysis_main
    from benchmark.cli import main as benchmark_main

    for name, content in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            Path(name).mkdir()
        else:
            Path(name).write_text(content if isinstance(content, str) else json.dumps(content))
    capsys.readouterr()
    try:
        code = (benchmark_main if argv[0] == "benchmark" else analysis_main)(argv[1:])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table(rows) -> str:
    out = ["# Bad inputs and what they get", "",
           "Every row was run by `tests/benchmark/test_bad_inputs.py`, which also checks that",
           "this table is current: exit code 2, one `error:` line on stderr (argparse adds its",
           "usage line), no traceback, and no run folder written (except by the grid whose",
           "cells ran). The machine is offline, as this project's machines are; files named in",
           "*needs* are in the current folder, beside a small dataset folder `toy/`.", "",
           "| # | what is wrong | command | needs | exit | message |",
           "|---|---|---|---|---|---|"]
    for i, (what, files, argv, code, message) in enumerate(rows, 1):
        needs = "; ".join(f"`{name}`" + ("" if c is None else f": `{json.dumps(c)}`")
                          for name, c in files.items())
        cmd = "python -m " + " ".join(argv)
        cell = message.replace("|", "\\|").replace("`", "'")
        out.append(f"| {i} | {what} | `{cmd}` | {needs} | {code} | {cell} |")
    return "\n".join(out) + "\n"


def test_every_bad_input_is_one_error_line_with_exit_code_2(scratch, capsys):
    rows, wrong = [], []
    for what, files, argv in CASES:
        code, out, err = run_case(files, argv, capsys)
        lines = [x for x in err.strip().splitlines() if x.strip()]
        message = lines[-1] if lines else ""
        argparse_error = len(lines) >= 2 and lines[0].startswith("usage:") \
            and ": error: " in message
        one_line = len(lines) == 1 and message.startswith("error: ")
        if code != 2 or "Traceback" in err or not (one_line or argparse_error):
            wrong.append(f"{what}: exit {code}, stderr:\n{err}")
        if what not in WRITES and Path("runs").exists():
            wrong.append(f"{what}: a run folder was written")
        if what not in PRINTS and out.strip():
            wrong.append(f"{what}: printed more than the error:\n{out}")
        message = re.sub(r"_s(\d+)_[0-9a-f]{12}\b", r"_s\1_{hash}",  # the hash holds the
                         message.replace(str(scratch), "."))            # scratch folder's path
        rows.append((what, files, argv, code, message))
        for path in sorted(Path(".").rglob("*"), reverse=True):  # fresh folder for the next
            if not str(path).startswith("toy"):
                path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    assert not wrong, "\n\n".join(wrong)
    assert len(rows) >= 30
    text = table(rows)
    if os.environ.get("ACTUNE_UPDATE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
    assert DOC.exists() and DOC.read_text() == text, (
        "docs/bad-inputs.md is stale: regenerate it with ACTUNE_UPDATE_DOCS=1 python -m pytest "
        "tests/benchmark/test_bad_inputs.py")


# ------------------------------------------------------------------------------------------------
# the offline fail-fast itself, without the patched probe
@pytest.mark.parametrize("env", [{}, {"HF_HUB_OFFLINE": "1"}], ids=["as-is", "HF_HUB_OFFLINE"])
def test_an_unknown_backbone_fails_at_once(env, toy_data, tmp_path, monkeypatch, capsys):
    """Today: 51-59 s of hub retries, then a traceback. Offline or online, the answer now comes
    in seconds (the probe is bounded) and names the backbone and the aliases."""
    import time

    from benchmark.cli import main

    for var, value in env.items():
        monkeypatch.setenv(var, value)
    start = time.time()
    code = main(["run", "--method", "random", "--dataset", str(toy_data), "--preset", "smoke",
                 "--out", str(tmp_path / "runs"), "--set", "backbone=nonexistent-model"])
    assert code == 2 and time.time() - start < 15
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backbone 'nonexistent-model'") and "minilm, tiny" in err
    if env:
        assert err.endswith("and HF_HUB_OFFLINE is set")
    assert not (tmp_path / "runs").exists()


def test_a_registered_dataset_offline_fails_at_once(monkeypatch, tmp_path):
    from benchmark.data import DataError, check_dataset

    monkeypatch.delenv("ACTUNE_DATA", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="dataset 'sst2': no data directory was given .* and "
                                        "HF_DATASETS_OFFLINE is set; pass --data-dir DIR"):
        check_dataset("sst2")
    (tmp_path / "sst2").mkdir()
    check_dataset("sst2", str(tmp_path))  # found in the data directory: no hub needed


def test_online_an_unknown_hub_model_is_named(monkeypatch):
    """With a network, the hub itself says the model does not exist (simulated here)."""
    import huggingface_hub

    from benchmark import hub
    from benchmark.backbones import check_backbone
    from benchmark.config import ConfigError

    monkeypatch.setattr(hub, "offline_reason", lambda kind: None)
    monkeypatch.setattr(huggingface_hub, "file_exists", lambda repo, name: False)
    with pytest.raises(ConfigError, match="backbone 'someone/no-such-model': no such model on "
                                          "the Hugging Face hub"):
        check_backbone("someone/no-such-model")
