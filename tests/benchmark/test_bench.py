"""The benchmark command's bookkeeping on the tiny backbone (its figures are timings, so only
their relations are checked: shares are the ratios they claim to be, phases add up)."""
import argparse

import pytest
import torch

from benchmark.bench import bench, parse_overhead_at, report, report_overhead_at


def test_bench_figures_are_consistent(toy_data, tiny_overrides, device):
    r = bench("actune", str(toy_data), "smoke", setting="ssal", overrides=tiny_overrides,
              device=device, train_steps=3)
    assert r["method"] == "actune" and r["n_pool"] == 120
    assert r["inference_texts_per_s"] == pytest.approx(r["n_pool"] / r["inference_s"])
    precision = "bf16" if r["bf16_autocast"] else "fp32"  # the peak of the precision it ran in
    assert r["inference_precision"] == precision
    assert r["inference_share_of_peak"] == pytest.approx(
        r["inference_gflops"] / r[f"matmul_peak_gflops_{precision}"])
    assert r["inference_share_of_layer_matmul"] == pytest.approx(
        r["inference_gflops"] / r["matmul_layer_gflops"])
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
    assert "actune's own overhead (region sampling + memory bank)" in text
    assert f"share of the {precision} matmul peak" in text
    assert "packed / padded useful tokens/s" in text and r["bf16_path"] in text



def test_bench_times_the_overhead_alone_at_other_pool_sizes(toy_data, tiny_overrides):
    r = bench("actune", str(toy_data), "smoke", setting="ssal", overrides=tiny_overrides,
              overhead_at=[(600, None), (900, 50.0)])
    projected, stated = r["overhead_at"]
    assert (projected["n_pool"], projected["round"]) == (600, "projected")
    assert (stated["n_pool"], stated["round"], stated["round_s"]) == (900, "stated", 50.0)
    overhead = projected["region_sampling_s"] + projected["memory_bank_s"]
    assert overhead > 0 and projected["round_s"] == pytest.approx(
        r["inference_s"] * 600 / r["n_pool"] + r["train_s"] + r["eval_s"] + overhead)
    assert projected["overhead_share"] == pytest.approx(overhead / projected["round_s"])
    assert "600 texts" in report_overhead_at(r) and "(stated)" in report_overhead_at(r)
    # by default only a method that declares overhead phases is timed at other sizes, and only
    # one declaring them is held to the overhead target
    plain = bench("entropy", str(toy_data), "smoke", setting="al", overrides=tiny_overrides,
                  overhead_at=None, train_steps=0)
    assert plain["overhead_at"] == [] and plain["overhead_phases"] == []
    assert "own overhead" not in report(plain)


def test_overhead_at_reads_sizes_and_stated_round_times():
    assert parse_overhead_at("10000,100000:300") == [(10000, None), (100000, 300.0)]
    assert parse_overhead_at("") == []
    for bad in ("10k", "100:x", "1", "100:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_overhead_at(bad)


def test_scaled_view_keeps_the_pool_features_and_probabilities(make_view):
    from benchmark.bench import scaled_view

    g = torch.Generator().manual_seed(0)
    view = make_view(torch.rand(50, 3, generator=g).softmax(-1),
                     features=torch.randn(50, 8, generator=g))
    big = scaled_view(view, 400)
    assert big.features.shape == (400, view.features.shape[1]) and big.probs.shape[0] == 400
    assert len(big.labelled_ids) + len(big.unlabelled_ids) == 400
    # each row is a pool row plus jitter smaller than the pool's own spread
    nearest = torch.cdist(big.features, view.features).min(1).values
    assert nearest.median() < torch.cdist(view.features, view.features).median()
    assert len(torch.unique(big.features, dim=0)) == 400
