"""Every Python script under scripts/ runs end to end in its seconds-long ``--smoke`` mode.

The scripts measure and print (their figures are not checked here); this keeps them from rotting.
A new script is picked up by the glob and must have a ``--smoke`` mode too. A script whose
optional peer library is absent is skipped with the reason, and refuses clearly when run.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
# script -> (module it needs beyond the suite's dependencies, how to get it)
OPTIONAL = {"compare_small_text.py": ("small_text", "pip install small-text==1.4.1")}


def _load(script: Path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_scripts_to_check():
    assert "compare_small_text.py" in [s.name for s in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_smoke_mode_runs(script, shared_data, tmp_path):
    need = OPTIONAL.get(script.name)
    if need and importlib.util.find_spec(need[0]) is None:
        pytest.skip(f"{need[0]} is not installed ({need[1]}); {script.name} compares against it")
    env = {**os.environ, "ACTUNE_DATA": str(shared_data),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "a benchmark script prints what it measured"


def test_small_text_comparison_refuses_clearly_without_small_text(monkeypatch, capsys):
    script = ROOT / "scripts" / "compare_small_text.py"
    module = _load(script)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "small_text" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        module.main(["--smoke"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: small-text is not installed")
