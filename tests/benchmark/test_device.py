"""The device in meta.json: CPU model and kernel flags, GPU when CUDA runs, threads, autocast."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmark import device as dev
from benchmark.backbones import amp_enabled
from benchmark.config import resolve
from benchmark.results import RunStore


def _first_cpu(key: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key:
            return v.strip()
    return None


def test_cpu_run_records_model_flags_threads_and_autocast():
    info = dev.device_info("cpu", {"threads": 3, "amp": "off"})
    assert info["device"] == "cpu" and info["gpu"] is None
    assert info["threads"] == 3 and info["bf16_autocast"] is False
    flags = (_first_cpu("flags") or "").split()
    assert info["cpu"]["kernel_flags"] == [f for f in dev.KERNEL_FLAGS if f in flags]
    if _first_cpu("model name"):
        assert info["cpu"]["model"] == _first_cpu("model name")
        assert info["cpu"]["model"] in dev.describe(info)
    assert info["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    auto = dev.device_info("cpu", {"amp": "auto"})
    assert auto["bf16_autocast"] == amp_enabled(torch.device("cpu"), "auto")
    assert auto["threads"] == torch.get_num_threads()  # no threads in the config: torch's own


def test_kernel_pinning_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert dev.device_info("cpu")["cpu"]["kernel_env"] == {"ATEN_CPU_CAPABILITY": "avx2"}


def test_cuda_run_records_the_gpu(monkeypatch):
    props = SimpleNamespace(name="NVIDIA H200", total_memory=int(139.8 * 2**30), major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    info = dev.device_info("cuda", {"amp": "auto"})
    assert info["gpu"]["name"] == "NVIDIA H200" and info["gpu"]["memory_gib"] == 139.8
    assert info["gpu"]["capability"] == "9.0" and info["bf16_autocast"] is True
    assert dev.describe(info) == "NVIDIA H200 (139.8 GiB), bf16"


def test_meta_json_of_a_run_folder_names_the_device(tmp_path):
    cfg = resolve("random", "trec", 0, "al", "smoke", {"threads": 1})
    store = RunStore(tmp_path, cfg, torch.device("cpu")).open()
    store.record_start()
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["device"]["threads"] == 1 and meta["device"]["device"] == "cpu"
    assert meta["device"]["cpu"]["model"] == (_first_cpu("model name")
                                              or meta["device"]["cpu"]["model"])


@pytest.mark.parametrize("info", [None, {}, {"cpu": {}}])
def test_describe_never_fails_on_sparse_info(info):
    assert isinstance(dev.describe(info), str)


@pytest.mark.parametrize("meta, expected", [
    (None, None), ({}, None), ({"device": {"bf16_autocast": None}}, None),
    ({"device": {"bf16_autocast": True}}, "bf16"),
    ({"device": {"bf16_autocast": False}, "resumes": [{"device": {"bf16_autocast": False}}]},
     "fp32"),
    ({"device": {"bf16_autocast": True}, "resumes": [{"device": {"bf16_autocast": False}}]},
     "mixed"),
    ({"host": "old", "resumes": [{"device": {"bf16_autocast": True}}]}, "bf16"),
])
def test_recorded_precision_reads_every_start_of_a_run(meta, expected):
    assert dev.recorded_precision(meta) == expected


def test_meta_describes_only_starts_that_recorded_a_round(tmp_path):
    """A start killed before its first round computed nothing: the next start replaces it, so
    the precision check never counts a machine that left no record."""
    cfg = resolve("random", "trec", 0, "al", "smoke", {"threads": 1})
    store = RunStore(tmp_path, cfg, torch.device("cpu")).open()
    store.record_start()
    first = json.loads((store.path / "meta.json").read_text())
    first["device"]["bf16_autocast"] = not first["device"]["bf16_autocast"]  # another machine
    (store.path / "meta.json").write_text(json.dumps(first))
    store.record_start()  # no round recorded yet: this start replaces that one
    meta = json.loads((store.path / "meta.json").read_text())
    assert "resumes" not in meta
    assert meta["device"]["bf16_autocast"] != first["device"]["bf16_autocast"]
    store.append({"round": 0})
    store.record_start()  # a round but no checkpoint: it starts over, so it replaces that start
    assert "resumes" not in json.loads((store.path / "meta.json").read_text())
    store.save_checkpoint({"round": 0})
    store.record_start()  # a resume after a checkpointed round is kept beside the first start
    assert len(json.loads((store.path / "meta.json").read_text())["resumes"]) == 1
