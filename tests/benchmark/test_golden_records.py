"""Golden records: smoke runs of every method must give exactly the committed records.

A refactor or a speed-up declared exact must not change results; this test is the guard. The
runs use the ``tiny`` backbone in float32 on one thread, and the subprocess pins the CPU
kernels to the AVX2 paths (ATen, MKL, oneDNN). Pinned, CPUs with AVX-512 (AMD Zen 4, Intel Xeon
with AMX) give the same floats, and CPUs without it (AMD Zen 3) give others, which no pin found
removes (MKL's CBWR modes, MKL_ENABLE_INSTRUCTIONS and OpenBLAS core types were tried): 13 of
the 18 runs agree there, and in CAL, ACTUNE-CAL, COSINE, REVIVAL and ACTUNE's weak run a
round-1 query or pseudo-label falls the other way on one of the tiny model's near-ties. So
there is one reference per class, ``reference_avx512.json`` and ``reference_avx2.json``,
computed by the same result code, and the test compares with its machine's class.

A commit that changes results on purpose regenerates this class's reference, says why, and
leaves the other class's to the first session on such a machine (its test fails until then):

    ACTUNE_UPDATE_GOLDEN=1 python -m pytest tests/benchmark/test_golden_records.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.device import device_info

HERE = Path(__file__).parent / "golden"
CPU_CLASS = "avx512" if "avx512f" in device_info("cpu")["cpu"]["kernel_flags"] else "avx2"
REFERENCE = HERE / f"reference_{CPU_CLASS}.json"
ROOT = Path(__file__).resolve().parents[2]
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def run_golden(data_dir: Path, out: Path, cache: Path) -> dict:
    env = {**os.environ, **PINNED_ENV, "ACTUNE_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(HERE / "run_golden.py"), str(data_dir), str(out)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def first_difference(expected: dict, got: dict) -> str:
    for run in sorted(set(expected) | set(got)):
        if run not in got or run not in expected:
            return f"{run}: only in {'reference' if run in expected else 'this run'}"
        for old, new in zip(expected[run], got[run]):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    return (f"{run}, round {old.get('round')}, {key}: reference "
                            f"{old.get(key)!r}, now {new.get(key)!r}")
        if len(expected[run]) != len(got[run]):
            return f"{run}: {len(expected[run])} rounds in the reference, {len(got[run])} now"
    return "none"


def test_smoke_records_equal_the_committed_reference(shared_data, tmp_path):
    got = run_golden(shared_data, tmp_path / "runs", tmp_path / "cache")
    if os.environ.get("ACTUNE_UPDATE_GOLDEN"):
        REFERENCE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"reference rewritten: {REFERENCE}")
    expected = json.loads(REFERENCE.read_text())
    assert got == expected, (f"smoke records differ from the committed reference ({CPU_CLASS} "
                             "CPUs); first "
                             f"difference: {first_difference(expected, got)}. If the change is "
                             "meant to change results, regenerate the reference "
                             "(ACTUNE_UPDATE_GOLDEN=1) in the same commit and say why.")
    # the reference exercises what it guards: queries everywhere, pseudo-labels in ssal/weak
    for run, records in expected.items():
        assert all(r["queried_ids"] for r in records if r["round"] >= 1), run
        if not run.endswith("/al"):
            assert any(r["n_pseudo"] for r in records), f"{run} never pseudo-labels"


def test_the_reference_catches_a_changed_result(shared_data, tmp_path):
    """The comparison is not vacuous: one flipped query id is reported with its place."""
    expected = json.loads(REFERENCE.read_text())
    changed = json.loads(json.dumps(expected))
    changed["entropy/al"][1]["queried_ids"][0] += 1
    assert changed != expected
    assert first_difference(expected, changed).startswith("entropy/al, round 1, queried_ids")
