"""``python -m benchmark bench``: time one round of a method, phase by phase, against targets.

Measures, in one process: tokenisation, pool inference (texts/s, useful tokens/s and that as a
share of a matmul peak measured here and now), query selection with the method's own sub-phases
(region sampling, memory bank), training (texts/s) and evaluation, the share of ACTUNE's own
overhead in the round (``overhead_share``) and peak memory; then that overhead alone at other
pool sizes (``--overhead-at``). A script, not a test: it prints.
"""
from __future__ import annotations

import json
import resource
import tempfile
import time

import numpy as np
import torch

from .backbones import amp_enabled, cache_dir
from .config import resolve
from .loop import Run

OVERHEAD_PHASES = ("region_sampling", "memory_bank")


def matmul_gflops(dtype: torch.dtype, device: torch.device, m: int = 2048, k: int = 2048,
                  n: int = 2048, seconds: float = 1.0) -> float:
    """Sustained rate of an (m x k) @ (k x n) matmul on this device, in GFLOP/s. The default
    square shape gives the practical peak; the encoder's own shapes give what its layers can
    reach at best (a narrow model on short texts cannot feed a wide matrix unit)."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def flops_per_token(model, mean_len: float) -> float:
    """Forward FLOPs per token: 2 x non-embedding weights + attention scores/values."""
    enc = model.encoder
    emb = sum(p.numel() for p in enc.get_input_embeddings().parameters())
    dense = sum(p.numel() for p in model.parameters()) - emb
    cfg = enc.config
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * mean_len
    return 2 * dense + attention


def bench(method: str, dataset: str, preset: str = "cpu", data_dir: str | None = None,
          setting: str | None = None, seed: int = 0, overrides: dict | None = None,
          device=None, overhead_at: list | None = ()) -> dict:
    from methods import get_method

    cls = get_method(method)
    setting = setting or ("ssal" if "ssal" in cls.settings else cls.settings[0])
    cfg = resolve(method, dataset, seed, setting, preset, overrides)
    out: dict = {"method": cls.name, "dataset": cfg["dataset_name"], "preset": preset,
                 "setting": setting, "backbone": cfg["backbone"], "amp": cfg["amp"]}
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, tmp, data_dir, device, log=lambda *_: None)
        run.store.open()
        cached_before = len(list((cache_dir() / "tokens").glob("*.npz"))) \
            if (cache_dir() / "tokens").exists() else 0
        t0 = time.perf_counter()
        run._prepare()
        out["tokenisation_s"] = time.perf_counter() - t0
        out["tokenisation_cached"] = cached_before > 0 and \
            len(list((cache_dir() / "tokens").glob("*.npz"))) == cached_before
        state = run._fresh_state()
        _, model = run._train_round(0, state)           # the model the measured round starts from
        views = keep_views(run.method)                    # its real features, for overhead_at
        run._select(1, model, state)                      # measured: inference + query (+ sub-phases)
        sel_times = dict(state["pending"]["time"])
        record, _ = run._train_round(1, state)            # measured: training + evaluation
    dev = run.device
    n_pool = len(run.pool_tokens)
    useful = int(sum(len(t) for t in run.pool_tokens))
    inf_s = sel_times.get("inference", float("nan"))
    times = {k: v for k, v in record["time"].items()}
    round_s = sel_times.get("select_total", 0.0) + times["train"] + times["eval"]
    peak_bf16 = matmul_gflops(torch.bfloat16, dev)
    peak_fp32 = matmul_gflops(torch.float32, dev)
    # the encoder's feed-forward matmul at an inference batch of average length
    enc_cfg = model.encoder.config
    rows = max(1, round(cfg["eval_batch_size"] * useful / n_pool))
    hidden = enc_cfg.hidden_size
    layer = [rows, hidden, getattr(enc_cfg, "intermediate_size", 4 * hidden)]
    layer_bf16 = matmul_gflops(torch.bfloat16, dev, *layer)
    fpt = flops_per_token(model, useful / n_pool)
    amp_on = amp_enabled(dev, cfg["amp"])
    achieved = useful * fpt / inf_s / 1e9 if inf_s == inf_s else float("nan")
    steps = record["train"]["steps"]
    per_step = cfg["batch_size"] + (cfg["batch_size_unlabelled"] if record["n_pseudo"] else 0)
    out.update({
        "n_pool": n_pool, "useful_tokens": useful, "device": str(dev),
        "threads": torch.get_num_threads(), "bf16_autocast": bool(amp_on),
        "inference_s": inf_s, "inference_texts_per_s": n_pool / inf_s,
        "inference_useful_tokens_per_s": useful / inf_s,
        "inference_gflops": achieved, "matmul_peak_gflops_bf16": peak_bf16,
        "matmul_peak_gflops_fp32": peak_fp32,
        "inference_share_of_bf16_peak": achieved / peak_bf16,
        "matmul_layer_shape": layer,
        "matmul_layer_gflops_bf16": layer_bf16,
        "inference_share_of_layer_matmul": achieved / layer_bf16,
        "query_s": sel_times.get("query", 0.0),
        **{f"{k}_s": sel_times.get(k, 0.0) for k in OVERHEAD_PHASES},
        "train_s": times["train"], "train_steps": steps,
        "train_texts_per_s": steps * per_step / times["train"],
        "eval_s": times["eval"], "dev_eval_during_training_s": record["train"]["dev_eval_seconds"],
        "round_s": round_s,
        "overhead_share": sum(sel_times.get(k, 0.0) for k in OVERHEAD_PHASES) / round_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_acc_round1": record["test_acc"],
    })
    out["overhead_at"] = overhead_at_sizes(cfg, views[0], overhead_at, out)
    return out


# ----------------------------------------------------------------------------------------------
# ACTUNE's own overhead at other pool sizes, timed alone
# ----------------------------------------------------------------------------------------------

OVERHEAD_AT = (10_000, 100_000)   # pool sizes timed by default for a method with these phases
JITTER = 0.3                      # x each feature dimension's spread, in scaled_view


def keep_views(method) -> list:
    """Wrap ``method.select`` so the RoundViews it is given are kept."""
    views, select = [], method.select

    def keep(view):
        views.append(view)
        return select(view)

    method.select = keep
    return views


def scaled_view(view, n: int, seed: int = 0):
    """``view`` grown to ``n`` texts: each a random pool text's features, with Gaussian jitter
    (``JITTER`` x each dimension's spread, so no two coincide), and its probabilities; 100
    labelled, the rest unlabelled. Real features keep a real pool's cluster structure, which
    sets how many Lloyd iterations K-means takes; the jitter makes it a pool, not copies."""
    from methods.base import Extras, PhaseTimer, RoundView

    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(view.features), (n,), generator=g)
    features = view.features[pick] + JITTER * view.features.std(0) * torch.randn(
        n, view.features.shape[1], generator=g)
    probs = view.probs[pick]
    labelled = np.arange(min(100, n // 10))
    return RoundView(round=view.round, rounds=view.rounds, setting=view.setting,
                     budget=min(view.budget, n - len(labelled)), probs=probs, features=features,
                     labelled_ids=labelled, labelled_y=probs[labelled].argmax(-1).numpy(),
                     unlabelled_ids=np.arange(len(labelled), n), rng=np.random.default_rng(seed),
                     dataset=view.dataset, num_classes=view.num_classes, timer=PhaseTimer(),
                     extras=Extras(device=view.device), allow_pseudo=view.allow_pseudo)


def overhead_at_sizes(cfg: dict, view, sizes: list | None, result: dict) -> list[dict]:
    """Region sampling + memory bank alone, on ``view`` scaled to each pool size, as a share of
    a round: stated (``(n, seconds)``) or projected from ``result``'s measured round (inference
    scaled to n at its measured rate, training and evaluation as measured: their cost does not
    grow with the pool)."""
    from methods import get_method

    if sizes is None:   # the default: only where the measured round has these phases
        sizes = [(n, None) for n in OVERHEAD_AT] if result["region_sampling_s"] else []
    rows = []
    for n, stated in sizes:
        scaled = scaled_view(view, n)
        get_method(cfg["method"])(**cfg["params"]).select(scaled)
        secs = {k: scaled.timer.seconds.get(k, 0.0) for k in OVERHEAD_PHASES}
        overhead = sum(secs.values())
        round_s = stated if stated is not None else (
            result["inference_s"] * n / result["n_pool"] + result["train_s"] + result["eval_s"]
            + overhead)
        rows.append({"n_pool": n, **{f"{k}_s": v for k, v in secs.items()}, "round_s": round_s,
                     "round": "stated" if stated is not None else "projected",
                     "overhead_share": overhead / round_s})
    return rows


def report_overhead_at(result: dict) -> str:
    rows = result.get("overhead_at") or []
    if not rows:
        return ""
    lines = [f"ACTUNE's own overhead alone, on this run's {result['n_pool']:,} real features "
             f"resampled to n texts (jitter {JITTER} x spread); round projected = this run's "
             "inference rate x n + its training and evaluation, or stated"]
    for r in rows:
        parts = " + ".join(f"{k.replace('_', ' ')} {r[k + '_s']:.3f} s" for k in OVERHEAD_PHASES)
        lines.append(f"  {r['n_pool']:>9,} texts: {parts} = {r['overhead_share']:.2%} of a "
                     f"{r['round_s']:.1f} s round ({r['round']}); target <= 1% "
                     f"{'met' if r['overhead_share'] <= 0.01 else 'NOT met'}")
    return "\n".join(lines)


def parse_overhead_at(text: str) -> list:
    """``10000,100000:300`` -> [(10000, None), (100000, 300.0)]: pool sizes, each with an
    optional stated round time in seconds."""
    import argparse

    out = []
    for item in filter(None, text.split(",")):
        n, _, stated = item.partition(":")
        try:
            out.append((int(n), float(stated) if stated else None))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not N or N:SECONDS") from None
        if out[-1][0] < 2 or (stated and out[-1][1] <= 0):
            raise argparse.ArgumentTypeError(f"{item!r}: need N >= 2 and SECONDS > 0")
    return out


TARGETS = (("overhead_share", "<=", 0.01, "ACTUNE overhead (RS + MMB) share of the round"),
           ("inference_share_of_bf16_peak", ">=", 0.70, "pool inference, share of bf16 matmul peak"))


def report(result: dict) -> str:
    rows = [("phase", "seconds", "rate")]
    rows.append(("tokenisation" + (" (cached)" if result["tokenisation_cached"] else ""),
                 f"{result['tokenisation_s']:.2f}", ""))
    rows.append(("pool inference", f"{result['inference_s']:.2f}",
                 f"{result['inference_texts_per_s']:.0f} texts/s, "
                 f"{result['inference_useful_tokens_per_s']:.0f} useful tokens/s, "
                 f"{result['inference_gflops']:.0f} GFLOP/s"))
    rows.append(("query selection", f"{result['query_s']:.3f}", ""))
    for k in OVERHEAD_PHASES:
        rows.append((f"  {k.replace('_', ' ')}", f"{result[k + '_s']:.3f}", ""))
    rows.append(("training", f"{result['train_s']:.2f}",
                 f"{result['train_texts_per_s']:.0f} texts/s ({result['train_steps']} steps)"))
    rows.append(("evaluation", f"{result['eval_s']:.2f}", ""))
    rows.append(("round (inference+query+train+eval)", f"{result['round_s']:.2f}", ""))
    w = max(len(r[0]) for r in rows)
    lines = [f"{a:<{w}}  {b:>8}  {c}" for a, b, c in rows]
    lines.append(f"matmul peak here: {result['matmul_peak_gflops_bf16']:.0f} GFLOP/s bf16, "
                 f"{result['matmul_peak_gflops_fp32']:.0f} fp32; the encoder's own feed-forward "
                 f"matmul {'x'.join(map(str, result['matmul_layer_shape']))} "
                 f"{result['matmul_layer_gflops_bf16']:.0f} GFLOP/s bf16 (inference reaches "
                 f"{result['inference_share_of_layer_matmul']:.0%} of it); peak RSS "
                 f"{result['peak_rss_mb']:.0f} MB; bf16 autocast {'on' if result['bf16_autocast'] else 'off'}")
    for key, op, target, what in TARGETS:
        value = result[key]
        ok = value <= target if op == "<=" else value >= target
        lines.append(f"target {what}: {value:.3%} {op} {target:.0%}  {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--setting", default=None, help="default: ssal when the method supports it")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", default=None, help="write the figures to this file as JSON")
    p.add_argument("--overhead-at", type=parse_overhead_at, default=None, metavar="N[:S],...",
                   help="also time region sampling + memory bank alone at these pool sizes, "
                   "against a stated round of S seconds or one projected from this run "
                   f"(default {','.join(map(str, OVERHEAD_AT))} for a method with these phases; "
                   "'' for none)")


def main(args) -> None:
    from .config import parse_overrides

    result = bench(args.method, args.dataset, args.preset, args.data_dir, args.setting, args.seed,
                   parse_overrides(args.overrides), args.device, args.overhead_at)
    print(report(result))
    if result["overhead_at"]:
        print(report_overhead_at(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
