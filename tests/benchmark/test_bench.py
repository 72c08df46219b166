"""The benchmark command's bookkeeping on the tiny backbone (its figures are timings, so only
their relations are checked: shares are the ratios they claim to be, phases add up)."""
import pytest

from benchmark.bench import bench, report


def test_bench_figures_are_consistent(toy_data, tiny_overrides, device):
    r = bench("actune", str(toy_data), "smoke", setting="ssal", overrides=tiny_overrides,
              device=device, train_steps=3)
    assert r["method"] == "actune" and r["n_pool"] == 120
    assert r["inference_texts_per_s"] == pytest.approx(r["n_pool"] / r["inference_s"])
    assert r["inference_share_of_bf16_peak"] == pytest.approx(
        r["inference_gflops"] / r["matmul_peak_gflops_bf16"])
    assert r["inference_share_of_layer_matmul"] == pytest.approx(
        r["inference_gflops"] / r["matmul_layer_gflops_bf16"])
    overhead = r["region_sampling_s"] + r["memory_bank_s"]
    assert 0 < overhead <= r["query_s"] <= r["round_s"]
    assert r["overhead_share"] == pytest.approx(overhead / r["round_s"])
    assert r["peak_rss_mb"] > 0
    # the same training steps on both paths; the packed one never computes on more padding
    assert r["train_compare_steps"] == 3 and r["train_compare_texts_per_step"] == 8 + 32
    assert 0 < r["train_padded_real_share"] <= r["train_packed_real_share"] <= 1
    assert r["train_packed_speedup"] == pytest.approx(
        r["train_packed_useful_tokens_per_s"] / r["train_padded_useful_tokens_per_s"])
    assert r["train_floor_ms_per_step"] > 0
    if device == "cuda":
        assert r["peak_gpu_memory_mb"] > 0 and "CUDA" in r["bf16_path"]
    else:
        assert r["peak_gpu_memory_mb"] is None
    text = report(r)
    assert "overhead (RS + MMB)" in text and "share of bf16 matmul peak" in text
    assert "packed / padded useful tokens/s" in text and r["bf16_path"] in text

