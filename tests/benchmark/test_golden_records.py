"""Golden records: smoke runs of every method must give exactly the committed records.

A refactor or a speed-up declared exact must not change results; this test is the guard. The
runs use the ``tiny`` backbone in float32 on one thread, and the subprocess pins the CPU
kernels to the AVX2 paths (ATen, MKL, oneDNN). Pinned, CPUs still fall into two classes of
floats, which no pin found removes (MKL's CBWR modes, MKL_ENABLE_INSTRUCTIONS and OpenBLAS core
types were tried): 13 of the 18 runs agree across them, and in CAL, ACTUNE-CAL, COSINE, REVIVAL
and ACTUNE's weak run a round-1 query or pseudo-label falls the other way on one of the tiny
model's near-ties. The class is not read off the CPU flags: Intel Xeon with AMX and AMD Zen 4
give ``reference_avx512.json``, AMD Zen 3 (AVX2) and AMD Zen 5 (AVX-512 with bf16) give
``reference_avx2.json`` (the names say where each was first made). So the records must equal
one of the committed references, computed by the same result code: a change of results
changes them on every class, and no change lands on the other class's floats exactly.

A commit that changes results on purpose regenerates the reference of this machine's class
(the one it matched before the change), says why, and leaves the other to the first session on
such a machine (its test fails until then). ``1`` writes the nearest reference and refuses when
the new records are as far from both (a change of every run): then name it.

    ACTUNE_UPDATE_GOLDEN=1 python -m pytest tests/benchmark/test_golden_records.py
    ACTUNE_UPDATE_GOLDEN=avx512 python -m pytest tests/benchmark/test_golden_records.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


HERE = Path(__file__).parent / "golden"
REFERENCES = sorted(HERE.glob("reference_*.json"))
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


def differing_runs(expected: dict, got: dict) -> int:
    return sum(expected.get(run) != got.get(run) for run in set(expected) | set(got))


def by_distance(got: dict) -> list[tuple[int, Path, dict]]:
    """The committed references as (runs unlike ``got``, path, records), nearest first: the
    first is this machine's class."""
    refs = [(p, json.loads(p.read_text())) for p in REFERENCES]
    return sorted(((differing_runs(ref, got), p, ref) for p, ref in refs), key=lambda r: r[0])


def reference_to_update(name: str, got: dict) -> Path:
    """``ACTUNE_UPDATE_GOLDEN``'s file: the one named, or for ``1`` the strictly nearest."""
    if name != "1":
        path = HERE / f"reference_{name}.json"
        names = ", ".join(p.stem.removeprefix("reference_") for p in REFERENCES)
        assert path in REFERENCES, f"ACTUNE_UPDATE_GOLDEN: no {path.name}; name one of {names}"
        return path
    (near, path, _), (second, _, _) = by_distance(got)[:2]
    assert near < second, ("ACTUNE_UPDATE_GOLDEN=1: the new records are as far from every "
                           "reference; name this machine's class (the reference it matched "
                           "before the change), e.g. ACTUNE_UPDATE_GOLDEN=avx512")
    return path


def test_smoke_records_equal_the_committed_reference(shared_data, tmp_path):
    got = run_golden(shared_data, tmp_path / "runs", tmp_path / "cache")
    if os.environ.get("ACTUNE_UPDATE_GOLDEN"):
        path = reference_to_update(os.environ["ACTUNE_UPDATE_GOLDEN"], got)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"reference rewritten: {path}")
    far, path, expected = by_distance(got)[0]
    assert got == expected, (f"smoke records differ from every committed reference; nearest: "
                             f"{path.name} ({far} of {len(expected)} "
                             f"runs differ), first difference: {first_difference(expected, got)}"
                             ". If the change is meant to change results, regenerate the "
                             "reference (ACTUNE_UPDATE_GOLDEN=1) in the same commit and say why.")
    # the reference exercises what it guards: queries everywhere, pseudo-labels in ssal/weak
    for run, records in expected.items():
        assert all(r["queried_ids"] for r in records if r["round"] >= 1), run
        if not run.endswith("/al"):
            assert any(r["n_pseudo"] for r in records), f"{run} never pseudo-labels"


def test_the_reference_catches_a_changed_result(shared_data, tmp_path):
    """The comparison is not vacuous: one flipped query id is reported with its place, and
    the references differ, each nearest to itself (else matching either would guard less)."""
    assert len(REFERENCES) == 2
    for path in REFERENCES:
        expected = json.loads(path.read_text())
        changed = json.loads(json.dumps(expected))
        changed["entropy/al"][1]["queried_ids"][0] += 1
        assert changed != expected
        assert first_difference(expected, changed).startswith("entropy/al, round 1, queried_ids")
        assert by_distance(changed)[0][:2] == (1, path)
        assert reference_to_update("1", changed) == path
    everything_changed = {run: [] for run in expected}      # as far from both references
    with pytest.raises(AssertionError, match="name this machine's class"):
        reference_to_update("1", everything_changed)
    assert reference_to_update("avx512", everything_changed).name == "reference_avx512.json"
