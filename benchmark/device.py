"""What a run computed on: the facts that change its floats, written into every ``meta.json``.

The same config gives different numbers on different hardware (measured: 1.4 points in one round
between two CPU types): the CPU model and the instruction sets torch's kernels dispatch on
(AVX-512, its bf16 extension, AMX), the GPU, the thread count and whether bf16 autocast ran.
A study that spans machines can then say which cells ran where (``analysis.load``), and a
run or grid refuses to continue at another precision than its finished rounds used.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# /proc/cpuinfo flags that select different matmul / attention kernels in torch (oneDNN)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                "amx_int8")
# environment variables that cap or pin those kernels (the golden-record test sets them)
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
              "MKL_ENABLE_INSTRUCTIONS")


def _cpuinfo() -> tuple[str | None, str | None, list[str]]:
    """(model name, ``family/model/stepping``, kernel-relevant flags present) of the first CPU
    in /proc/cpuinfo; Nones elsewhere. Virtual machines often report a generic model name, and
    the numeric id still tells two CPU generations apart."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None, []
    first: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    ident = [first.get(k) for k in ("cpu family", "model", "stepping")]
    flags = set((first.get("flags") or first.get("Features") or "").split())
    return (first.get("model name"), "/".join(ident) if all(ident) else None,
            [f for f in KERNEL_FLAGS if f in flags])


def device_info(device: str | torch.device | None = None, cfg: dict | None = None) -> dict:
    """CPU model and kernel flags, the GPU (name, memory) when the run uses CUDA, torch's thread
    count and whether bf16 autocast is on, for a run on ``device`` under config ``cfg``."""
    from .backbones import amp_enabled, bf16_emulated, default_device

    cfg = cfg or {}
    dev = torch.device(device) if device is not None else default_device()
    model, ident, flags = _cpuinfo()
    try:
        capability = torch.backends.cpu.get_cpu_capability()  # honours ATEN_CPU_CAPABILITY
    except (AttributeError, RuntimeError):
        capability = None
    info = {"device": str(dev),
            "cpu": {"model": model or platform.processor() or platform.machine() or None,
                    "family_model_stepping": ident, "kernel_flags": flags,
                    "torch_capability": capability, "cores": os.cpu_count(),
                    "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}},
            "gpu": None,
            "threads": int(cfg["threads"]) if cfg.get("threads") else torch.get_num_threads()}
    try:
        info["bf16_autocast"] = amp_enabled(dev, cfg.get("amp", "auto"))
        if bf16_emulated(dev, cfg.get("amp", "auto")):
            info["bf16_emulated"] = True     # matmuls on fp32 units (backbones.Bf16OnFp32Units)
    except ValueError:
        info["bf16_autocast"] = None
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    return info


def precision(bf16: bool | None) -> str | None:
    """``bf16`` or ``fp32``: the words for whether bf16 autocast ran (None: not recorded)."""
    return None if bf16 is None else ("bf16" if bf16 else "fp32")


def recorded_precision(meta: dict | None) -> str | None:
    """The precision a run's rounds used, from its ``meta.json`` (first start and every
    resume): ``bf16``, ``fp32``, ``mixed`` when its starts differed, None when not recorded.

    ``amp: auto`` resolves per machine (bf16 on CUDA and on CPUs with native bf16, fp32
    elsewhere), so one config can compute at either precision: this is what it did."""
    if not isinstance(meta, dict):
        return None
    starts = [meta, *(r for r in meta.get("resumes") or [] if isinstance(r, dict))]
    seen = {precision((s.get("device") or {}).get("bf16_autocast")) for s in starts}
    seen.discard(None)
    return None if not seen else seen.pop() if len(seen) == 1 else "mixed"


def describe(info: dict | None) -> str:
    """One line naming a device, for messages: ``Intel Xeon ... [avx512_bf16 amx_bf16], 1
    thread, bf16`` or ``NVIDIA H200 (139.8 GiB), bf16``."""
    if not isinstance(info, dict):
        return "unknown device"
    gpu, cpu = info.get("gpu"), info.get("cpu") or {}
    amp = {True: ", bf16", False: ", fp32"}.get(info.get("bf16_autocast"), "")
    if amp and info.get("bf16_emulated"):
        amp += " on fp32 units"
    if isinstance(gpu, dict):
        return f"{gpu.get('name', 'GPU')} ({gpu.get('memory_gib', '?')} GiB){amp}"
    have = cpu.get("kernel_flags") or []
    flags = [f for f in ("avx512_bf16",) if f in have] + (["amx"] if any("amx" in f for f in have)
                                                           else [])
    kernels = " ".join(x for x in [cpu.get("torch_capability"), *flags] if x)
    threads = info.get("threads")
    ident = cpu.get("family_model_stepping")
    return (f"{cpu.get('model') or 'unknown CPU'}" + (f" ({ident})" if ident else "")
            + (f" [{kernels}]" if kernels else "")
            + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "") + amp)
