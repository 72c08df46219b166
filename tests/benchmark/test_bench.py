"""The benchmark command's bookkeeping on the tiny backbone (its figures are timings, so only
their relations are checked: shares are the ratios they claim to be, phases add up)."""
import pytest

from benchmark.bench import bench, report


def test_bench_figures_are_consistent(toy_data, tiny_overrides):
    r = bench("actune", str(toy_data), "smoke", setting="ssal", overrides=tiny_overrides)
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
    text = report(r)
    assert "overhead (RS + MMB)" in text and "share of bf16 matmul peak" in text

