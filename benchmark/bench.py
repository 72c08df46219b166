"""``python -m benchmark bench``: time one round of a method, phase by phase, against targets.

Measures, in one process: tokenisation, pool inference (texts/s, useful tokens/s and that as a
share of a matmul peak measured here and now), query selection with the sub-phases the method
declares as its own overhead (``Method.overhead_phases``; ACTUNE: region sampling, memory bank),
training (texts/s) and evaluation, the share of that overhead in the round (``overhead_share``)
and peak memory; then the round's training steps on the padded (old) and packed (new) paths
side by side (``compare_training``), and the overhead alone at other pool sizes
(``--overhead-at``). A script, not a test: it prints.
"""
from __future__ import annotations

import json
import resource
import tempfile
import time

import numpy as np
import torch

from .backbones import (amp_enabled, bf16_emulated, bf16_units, build_classifier, cache_dir,
                        collate, cpu_has_bf16, pack_texts)
from .config import resolve
from .loop import RoundState, Run
from .training import _batches, step_loss


def matmul_gflops(dtype: torch.dtype, device: torch.device, m: int = 2048, k: int = 2048,
                  n: int = 2048, seconds: float = 1.0) -> float:
    """Sustained rate of an (m x k) @ (k x n) matmul on this device, in GFLOP/s. The default
    square shape gives the practical peak; the encoder's own shapes give what its layers can
    reach at best (a narrow model on short texts cannot feed a wide matrix unit). Where one
    product would outlast ``seconds`` (bf16 emulated on a CPU without native bf16 runs at about
    1 GFLOP/s), a 256-wide probe's rate stands for it, so the measure stays seconds-long."""
    probe = [min(x, 256) for x in (m, k, n)]
    if [m, k, n] != probe:
        rate = matmul_gflops(dtype, device, *probe, seconds=0.0)
        if 2 * m * k * n / (rate * 1e9) > seconds:
            return matmul_gflops(dtype, device, *probe, seconds=seconds)
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps, start = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - start < seconds:
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


def compare_training(run: Run, state: RoundState, steps: int = 40) -> dict:
    """Useful tokens/s of the same training steps on the padded (old) and packed (new) paths.

    The round's labelled and pseudo-labelled sets, batches drawn as ``fine_tune`` draws them;
    each batch runs once per path (forward, loss, backward, clipping, optimizer step), the two
    taking turns at going first, so both see the same load. Useful tokens are the batch's real
    tokens; the real-token share counts the tokens each path computes on. A third step per batch,
    on its first text alone, measures the per-step floor that no padding change removes
    (optimizer, clipping, the bf16 weight casts: work the size of the weights, not of the batch).
    """
    cfg, dev = run.cfg, run.device
    labelled, pseudo = run.training_sets(state)
    pseudo = pseudo if pseudo is not None and len(pseudo) else None
    model = build_classifier(cfg["backbone"], run.data.num_classes, seed=0,
                             dropout=cfg["dropout"], pooling=cfg["pooling"], vocab=run.vocab)
    model.to(dev).train()
    objective = run.method.objective(1, cfg["rounds"])
    objective.start(model)
    try:                                                 # fine_tune's optimizer
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    rng = np.random.default_rng(0)
    lab_iter = _batches(len(labelled), cfg["batch_size"], rng)
    uns_iter = _batches(len(pseudo), cfg["batch_size_unlabelled"], rng) if pseudo else None
    seconds, computed = {"padded": 0.0, "packed": 0.0, "floor": 0.0}, {"padded": 0, "packed": 0}
    useful = 0

    def one_step(path, step, lab_idx, uns_idx):
        start = time.perf_counter()
        with bf16_units(dev, cfg["amp"]):
            if path == "floor":
                loss = step_loss(model, objective, step, steps, labelled, lab_idx[:1], None,
                                 None, run.pad_id, cfg["amp"])
            else:
                loss = step_loss(model, objective, step, steps, labelled, lab_idx, pseudo,
                                 uns_idx, run.pad_id, cfg["amp"], pack=path == "packed")
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"], foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for step in range(-1, steps + 1):                    # steps -1 and 0 warm up, untimed
        lab_idx = next(lab_iter)
        uns_idx = next(uns_iter) if uns_iter is not None else None
        seqs = [labelled.tokens[labelled.ids[i]] for i in lab_idx]
        if pseudo is not None:
            seqs += [pseudo.tokens[pseudo.ids[i]] for i in uns_idx]
        order = ("padded", "packed", "floor") if step % 2 else ("floor", "packed", "padded")
        for path in order:
            took = one_step(path, max(step, 1), lab_idx, uns_idx)
            if step >= 1:
                seconds[path] += took
        if step >= 1:
            useful += sum(len(s) for s in seqs)
            computed["padded"] += collate(seqs, run.pad_id, "cpu")[0].numel()
            computed["packed"] += pack_texts(seqs, run.pad_id, "cpu").input_ids.numel()
    out = {"train_compare_steps": steps, "train_compare_texts_per_step":
           cfg["batch_size"] + (cfg["batch_size_unlabelled"] if pseudo is not None else 0)}
    for path in ("padded", "packed"):
        out[f"train_{path}_useful_tokens_per_s"] = useful / seconds[path]
        out[f"train_{path}_real_share"] = useful / computed[path]
        out[f"train_{path}_ms_per_step"] = 1000 * seconds[path] / steps
    out["train_floor_ms_per_step"] = 1000 * seconds["floor"] / steps
    out["train_packed_speedup"] = seconds["padded"] / seconds["packed"]
    out["train_packed_speedup_above_floor"] = \
        (seconds["padded"] - seconds["floor"]) / max(seconds["packed"] - seconds["floor"], 1e-9)
    return out


def device_figures(dev: torch.device, amp: str) -> dict:
    """Which device and precision path the round took, and its peak GPU memory (CUDA only)."""
    on = amp_enabled(dev, amp)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        native = torch.cuda.is_bf16_supported()
        path = f"bf16 autocast on CUDA ({'native' if native else 'emulated'} bf16)" if on \
            else "fp32 (autocast off)"
        return {"device_name": name, "bf16_path": path,
                "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(dev) / 2**20}
    native = "AVX512-BF16/AMX" if cpu_has_bf16() else "no native bf16"
    if bf16_emulated(dev, amp):
        native += ": matmuls on fp32 units"
    path = f"bf16 autocast on CPU ({native})" if on else f"fp32 (autocast off; {native})"
    return {"device_name": dev.type, "bf16_path": path, "peak_gpu_memory_mb": None}


def device_lines(result: dict) -> list[str]:
    line = f"device {result['device_name']}: {result['bf16_path']}"
    if result.get("peak_gpu_memory_mb") is not None:
        line += f"; peak GPU memory {result['peak_gpu_memory_mb']:.0f} MB (allocated by torch)"
    return [line]


def bench(method: str, dataset: str, preset: str = "cpu", data_dir: str | None = None,
          setting: str | None = None, seed: int = 0, overrides: dict | None = None,
          device=None, overhead_at: list | None = (), train_steps: int = 40) -> dict:
    from methods import get_method

    cls = get_method(method)
    setting = setting or ("ssal" if "ssal" in cls.settings else cls.settings[0])
    cfg = resolve(method, dataset, seed, setting, preset, overrides)
    out: dict = {"method": cls.name, "dataset": cfg["dataset_name"], "preset": preset,
                 "setting": setting, "backbone": cfg["backbone"], "amp": cfg["amp"],
                 "overhead_phases": list(cls.overhead_phases)}
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, tmp, data_dir, device, log=lambda *_: None)
        run.store.open()
        cached_before = len(list((cache_dir() / "tokens").glob("*.npz"))) \
            if (cache_dir() / "tokens").exists() else 0
        t0 = time.perf_counter()
        run.prepare()
        out["tokenisation_s"] = time.perf_counter() - t0
        out["tokenisation_cached"] = cached_before > 0 and \
            len(list((cache_dir() / "tokens").glob("*.npz"))) == cached_before
        state = run.initial_state()
        _, model = run.train_round(0, state)            # the model the measured round starts from
        views = keep_views(run.method)                    # its real features, for overhead_at
        run.select(1, model, state)                       # measured: inference + query (+ sub-phases)
        sel_times = dict(state.selected.time)
        record, _ = run.train_round(1, state)             # measured: training + evaluation
        training = compare_training(run, state, train_steps) if train_steps else {}
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
    fpt = flops_per_token(model, useful / n_pool)
    amp_on = amp_enabled(dev, cfg["amp"])
    # inference is measured against the peak of the units it computes on: without native bf16
    # (fp32, or bf16 on fp32 units) torch's scalar bf16 peak would make any rate look like a win
    on_bf16_units = amp_on and not bf16_emulated(dev, cfg["amp"])
    dtype = torch.bfloat16 if on_bf16_units else torch.float32
    layer_peak = matmul_gflops(dtype, dev, *layer)
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
        "inference_precision": ("bf16" if on_bf16_units else
                                "bf16 on fp32 units" if amp_on else "fp32"),
        "inference_share_of_peak": achieved / (peak_bf16 if on_bf16_units else peak_fp32),
        "matmul_layer_shape": layer,
        "matmul_layer_gflops": layer_peak,
        "inference_share_of_layer_matmul": achieved / layer_peak,
        "query_s": sel_times.get("query", 0.0),
        **{f"{k}_s": sel_times.get(k, 0.0) for k in cls.overhead_phases},
        "train_s": times["train"], "train_steps": steps,
        "train_texts_per_s": steps * per_step / times["train"],
        "eval_s": times["eval"], "dev_eval_during_training_s": record["train"]["dev_eval_seconds"],
        "round_s": round_s,
        "overhead_share": sum(sel_times.get(k, 0.0) for k in cls.overhead_phases) / round_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_acc_round1": record["test_acc"],
        **training,
        **device_figures(dev, cfg["amp"]),
    })
    out["overhead_at"] = overhead_at_sizes(cfg, views[0], overhead_at, out)
    return out


# ----------------------------------------------------------------------------------------------
# The method's own overhead at other pool sizes, timed alone
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
    """The method's overhead phases alone, on ``view`` scaled to each pool size, as a share of
    a round: stated (``(n, seconds)``) or projected from ``result``'s measured round (inference
    scaled to n at its measured rate, training and evaluation as measured: their cost does not
    grow with the pool)."""
    from methods import get_method

    phases = result["overhead_phases"]
    if sizes is None:   # the default: only where the measured round spent time in these phases
        sizes = [(n, None) for n in OVERHEAD_AT] if any(result[f"{k}_s"] for k in phases) else []
    rows = []
    for n, stated in sizes:
        scaled = scaled_view(view, n)
        get_method(cfg["method"])(**cfg["params"]).select(scaled)
        secs = {k: scaled.timer.seconds.get(k, 0.0) for k in phases}
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
    lines = [f"{result['method']}'s own overhead alone, on this run's {result['n_pool']:,} real "
             f"features resampled to n texts (jitter {JITTER} x spread); round projected = this "
             "run's inference rate x n + its training and evaluation, or stated"]
    for r in rows:
        parts = " + ".join(f"{k.replace('_', ' ')} {r[k + '_s']:.3f} s"
                           for k in result["overhead_phases"])
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


TARGETS = (("overhead_share", "<=", 0.01, "{method}'s own overhead ({phases}) share of the round"),
           ("inference_share_of_peak", ">=", 0.70,
            "pool inference, share of the {precision} matmul peak"))
# Issue 20: packed over padded training, useful tokens/s, on the cpu preset's SSAL steps.
TRAINING_SPEEDUP_TARGETS = {"trec": 1.4, "sst2": 1.7}


def training_lines(result: dict) -> list[str]:
    """The padded-vs-packed training comparison, as report lines (none when it did not run)."""
    if "train_packed_speedup" not in result:
        return []
    lines = [f"training steps, same {result['train_compare_steps']} batches of "
             f"{result['train_compare_texts_per_step']} texts on both paths:"]
    for path, name in (("padded", "padded (old)"), ("packed", "packed (new)")):
        lines.append(f"  {name:<13} {result[f'train_{path}_ms_per_step']:7.1f} ms/step  "
                     f"{result[f'train_{path}_useful_tokens_per_s']:7.0f} useful tokens/s  "
                     f"{result[f'train_{path}_real_share']:.0%} of computed tokens real")
    speedup = result["train_packed_speedup"]
    target = TRAINING_SPEEDUP_TARGETS.get(result["dataset"])
    verdict = "" if target is None or result["preset"] != "cpu" else \
        f"  (target >= {target}x: {'met' if speedup >= target else 'NOT met'})"
    lines.append(f"  packed / padded useful tokens/s: {speedup:.2f}x{verdict}")
    lines.append(f"  per-step floor (a step on one text: optimizer, clipping, weight casts) "
                 f"{result['train_floor_ms_per_step']:.1f} ms; above it, packed / padded "
                 f"{result['train_packed_speedup_above_floor']:.2f}x")
    return lines


def report(result: dict) -> str:
    rows = [("phase", "seconds", "rate")]
    rows.append(("tokenisation" + (" (cached)" if result["tokenisation_cached"] else ""),
                 f"{result['tokenisation_s']:.2f}", ""))
    rows.append(("pool inference", f"{result['inference_s']:.2f}",
                 f"{result['inference_texts_per_s']:.0f} texts/s, "
                 f"{result['inference_useful_tokens_per_s']:.0f} useful tokens/s, "
                 f"{result['inference_gflops']:.0f} GFLOP/s"))
    rows.append(("query selection", f"{result['query_s']:.3f}", ""))
    for k in result["overhead_phases"]:
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
                 f"{result['matmul_layer_gflops']:.0f} GFLOP/s {result['inference_precision']} "
                 f"(inference reaches "
                 f"{result['inference_share_of_layer_matmul']:.0%} of it); peak RSS "
                 f"{result['peak_rss_mb']:.0f} MB; bf16 autocast "
                 f"{'on' if result['bf16_autocast'] else 'off'}")
    phases = " + ".join(k.replace("_", " ") for k in result["overhead_phases"])
    for key, op, target, what in TARGETS:
        if key == "overhead_share" and not phases:
            continue   # the method declares no overhead of its own
        what = what.format(method=result["method"], phases=phases,
                           precision=result["inference_precision"])
        value = result[key]
        ok = value <= target if op == "<=" else value >= target
        lines.append(f"target {what}: {value:.3%} {op} {target:.0%}  {'met' if ok else 'NOT met'}")
    lines += device_lines(result) + training_lines(result)
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
    p.add_argument("--train-steps", type=int, default=40,
                   help="training steps timed on each path, padded and packed (0: skip)")
    p.add_argument("--json", default=None, help="write the figures to this file as JSON")
    p.add_argument("--overhead-at", type=parse_overhead_at, default=None, metavar="N[:S],...",
                   help="also time the method's overhead phases (ACTUNE: region sampling + "
                   "memory bank) alone at these pool sizes, against a stated round of S seconds "
                   f"or one projected from this run (default {','.join(map(str, OVERHEAD_AT))} "
                   "for a method that spent time in them; '' for none)")


def main(args) -> None:
    from .config import parse_overrides

    result = bench(args.method, args.dataset, args.preset, args.data_dir, args.setting, args.seed,
                   parse_overrides(args.overrides), args.device, args.overhead_at, args.train_steps)
    print(report(result))
    if result["overhead_at"]:
        print(report_overhead_at(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
