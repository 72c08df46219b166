"""scripts/gpu_check.sh refuses clearly where there is no CUDA (the CPU machines tests run on);
where there is, it is what `run`s it on a GPU."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_refuses_without_cuda_in_one_error_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device")
    assert not (tmp_path / "out").exists()      # refused before any work
