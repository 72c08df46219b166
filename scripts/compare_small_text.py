"""Speed of one Entropy active-learning round: small-text 1.4.1 next to actune-bench.

    python scripts/compare_small_text.py --data-dir ../shared/data --threads 2 --repeats 3

One process, one data set, one backbone, one round of the same work in both libraries:

    fit a fresh classifier from the pre-trained weights on the same labelled set (100 labels,
    batch 8, same epochs, lr, linear decay without warm-up, weight decay 0.01), choosing the
    model on the same dev set once per epoch -> evaluate on dev and test -> predict on the whole
    pool -> query the ``budget`` points of highest predictive entropy.

Our round goes through the real loop code (``Run.train_round`` then ``Run.select``, as
``benchmark/bench.py`` does); small-text's through ``PoolBasedActiveLearner`` with
``PredictionEntropy``. Both are timed phase by phase; small-text's phases come from a subclass
of its classifier whose overrides only add a timer around ``super()`` calls.

Matched so that the comparison is of equal work: texts and token ids (our tokenisation, fed to
both), initial labelled ids, pool, dev and test sets, epochs and steps, batch size, lr and
schedule, threads, dev-based model selection once per epoch (small-text always validates; our
``eval_every`` is set to one epoch), early stopping off, fp32 (``--amp off``, our default on
bf16 CPUs is autocast; small-text has none), and by default the inference batch size
(small-text predicts with its training ``mini_batch_size``; ``--st-eval-batch native`` keeps that).

Differences left in, because they are how each library works, and printed with the table:
small-text pads every text to ``max_length`` (its dataset stores fixed-width rows; ``--st-padding
longest`` pads to the longest text instead), we pack training texts end to end without padding
and pad length-sorted inference batches to their own longest text; small-text reloads the pre-trained weights from disk for every fit,
we copy them from memory; small-text checkpoints model + optimizer to disk at each validation, we
clone the model state in memory; small-text's head is BERT's pooler + linear, ours linear on the
first-token state (a 384x384 matmul per text, negligible); small-text selects the model by dev
loss, we by dev accuracy; small-text's AdamW is unfused and decays every weight.

A script that measures and prints, not a test. ``--smoke`` runs it in seconds on the tiny
random backbone (the test suite does, to keep the script working); its figures mean nothing.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.backbones import (amp_enabled, build_classifier, collate, predict,  # noqa: E402
                                 quiet_transformers, resolve_backbone)
from benchmark.config import resolve  # noqa: E402
from benchmark.loop import Run  # noqa: E402

PHASES = (
    ("init", "model init (pre-trained weights)"),
    ("train", "training steps"),
    ("select", "dev model selection (eval + checkpoint)"),
    ("eval", "evaluation (dev + test)"),
    ("inference", "pool inference"),
    ("query", "entropy query (scores + top-b)"),
)


# ------------------------------------------------------------------------------------------------
# Our suite
# ------------------------------------------------------------------------------------------------

def our_config(args) -> dict:
    """The cpu preset with the overrides that make our round the same work as small-text's."""
    per_epoch = math.ceil(args.initial / args.batch_size)
    overrides = dict(
        backbone=args.backbone, pool_size=args.pool_size, initial_size=args.initial,
        budget=args.budget, rounds=1, epochs=args.epochs, min_steps=0, max_steps=None,
        batch_size=args.batch_size, lr=args.lr, warmup=0.0, weight_decay=0.01,
        eval_every=per_epoch,               # dev selection once per epoch, like small-text
        max_length=args.max_length, dev_size=args.dev_size, test_size=args.test_size,
        eval_batch_size=args.eval_batch_size, amp=args.amp, threads=args.threads)
    return resolve("entropy", args.dataset, args.seed, "al", "cpu", overrides)


class Ours:
    name = "actune-bench"

    def __init__(self, cfg: dict, data_dir: str | None, out: str):
        self.run = Run(cfg, out, data_dir, "cpu", log=lambda *_: None)
        self.run.store.open()
        self.run.prepare()                          # data + tokenisation: outside the round

    def initial(self) -> tuple[np.ndarray, np.ndarray]:
        return self.run.initial_state().labelled()

    def round(self) -> tuple[dict, dict]:
        run = self.run
        state = run.initial_state()
        record, model = run.train_round(0, state)   # build + fine_tune + evaluate dev and test
        run.select(1, model, state)                 # pool inference + Entropy.select + oracle
        t, sel = record["time"], state.selected.time
        dev_eval = record["train"]["dev_eval_seconds"]
        seconds = {"init": t["round"] - t["train"] - t["eval"], "train": t["train"] - dev_eval,
                   "select": dev_eval, "eval": t["eval"], "inference": sel["inference"],
                   "query": sel["select_total"] - sel["inference"]}
        return seconds, {"test_acc": record["test_acc"], "dev_acc": record["dev_acc"],
                         "steps": record["train"]["steps"],
                         "queried": sorted(int(i) for i in state.selected.queried)}


# ------------------------------------------------------------------------------------------------
# small-text
# ------------------------------------------------------------------------------------------------

def small_text_classes():
    """A timed subclass of small-text's transformer classifier and a factory that makes it.

    Every override calls ``super()`` unchanged; the only other change is ``eval_batch_size``,
    the batch size of small-text's inference passes (validation and ``predict_proba``), which
    otherwise reuse the training ``mini_batch_size``.
    """
    from small_text.integrations.transformers import (TransformerBasedClassification,
                                                      TransformerBasedClassificationFactory)

    class TimedClassification(TransformerBasedClassification):
        def __init__(self, *args, eval_batch_size=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.seconds = defaultdict(float)
            self.eval_batch_size = eval_batch_size

        @contextmanager
        def _phase(self, name, inference=False):
            train_batch = self.mini_batch_size
            if inference and self.eval_batch_size:
                self.mini_batch_size = self.eval_batch_size
            start = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.mini_batch_size = train_batch

        def initialize_transformer(self, cache_dir):
            with self._phase("init"):
                return super().initialize_transformer(cache_dir)

        def validate(self, validation_set):
            with self._phase("select", inference=True):
                return super().validate(validation_set)

        # small-text's own checkpointing around validation (torch.save / torch.load on disk)
        def _save_model(self, *args, **kwargs):
            with self._phase("select"):
                return super()._save_model(*args, **kwargs)

        def _perform_model_selection(self, *args, **kwargs):
            with self._phase("select"):
                return super()._perform_model_selection(*args, **kwargs)

        def predict_proba(self, dataset, dropout_sampling=1):
            with self._phase("predict", inference=True):
                return super().predict_proba(dataset, dropout_sampling=dropout_sampling)

    class TimedFactory(TransformerBasedClassificationFactory):
        def __init__(self, model_args, num_classes, kwargs, eval_batch_size):
            super().__init__(model_args, num_classes, kwargs)
            self.eval_batch_size = eval_batch_size

        def new(self):
            return TimedClassification(self.transformer_model_args, self.num_classes,
                                       eval_batch_size=self.eval_batch_size, **self.kwargs)

    return TimedFactory


def to_small_text(tokens: list[np.ndarray], y: np.ndarray, width: int, pad_id: int, classes):
    """Our token ids as a small-text ``TransformersDataset`` of fixed-width rows.

    Built with the constructor rather than ``TransformersDataset.from_arrays``: that helper calls
    ``tokenizer.encode_plus``, which transformers 5 removed. Rows are what ``from_arrays`` makes:
    (ids (1, width), mask (1, width), label), padded on the right.
    """
    from small_text.integrations.transformers import TransformersDataset

    rows = []
    for seq, label in zip(tokens, y):
        ids, mask = collate([seq[:width]], pad_id, "cpu")
        pad = width - ids.shape[1]
        ids = torch.nn.functional.pad(ids, (0, pad), value=pad_id)
        mask = torch.nn.functional.pad(mask, (0, pad), value=0)
        rows.append((ids, mask, int(label)))
    return TransformersDataset(rows, target_labels=classes)


class SmallText:
    name = "small-text"

    def __init__(self, run: Run, args, cache: str):
        from small_text.base import LABEL_UNLABELED
        from small_text.integrations.transformers import TransformerModelArguments

        cfg = run.cfg
        classes = np.arange(run.data.num_classes)
        all_tokens = [*run.pool_tokens, *run.dev_tokens, *run.test_tokens]
        self.width = cfg["max_length"] if args.st_padding == "max_length" \
            else max(len(t) for t in all_tokens)
        # small-text's model has the full vocabulary: give it tokenizer ids, not our compact ones
        raw = (lambda toks: toks) if run.vocab is None else \
            (lambda toks: [run.vocab[t] for t in toks])  # noqa: E731
        make = lambda toks, y: to_small_text(raw(toks), y, self.width, run.pad_id, classes)  # noqa: E731
        self.pool = make(run.pool_tokens, np.full(len(run.pool_tokens), LABEL_UNLABELED))
        self.dev, self.dev_y = make(run.dev_tokens, run.dev_y), run.dev_y
        self.test, self.test_y = make(run.test_tokens, run.test_y), run.test_y
        self.budget, self.seed = cfg["budget"], cfg["seed"]
        kwargs = dict(num_epochs=cfg["epochs"], lr=cfg["lr"], mini_batch_size=cfg["batch_size"],
                      device="cpu", cache_dir=cache)
        eval_bs = cfg["eval_batch_size"] if args.st_eval_batch == "matched" else None
        self.factory = small_text_classes()(
            TransformerModelArguments(resolve_backbone(cfg["backbone"])), len(classes), kwargs,
            eval_bs)

    def round(self, initial_ids: np.ndarray, initial_y: np.ndarray) -> tuple[dict, dict]:
        from small_text import PoolBasedActiveLearner, PredictionEntropy

        learner = PoolBasedActiveLearner(
            self.factory, PredictionEntropy(), self.pool,
            fit_kwargs=dict(validation_set=self.dev, early_stopping="none"))
        torch.manual_seed(self.seed)
        start = time.perf_counter()
        learner.initialize_data(initial_ids, initial_y)       # new classifier + fit
        fit = time.perf_counter() - start
        clf = learner.classifier
        start = time.perf_counter()
        dev_acc = float((clf.predict(self.dev) == self.dev_y).mean())
        test_acc = float((clf.predict(self.test) == self.test_y).mean())
        evaluation = time.perf_counter() - start
        before = clf.seconds["predict"]
        start = time.perf_counter()
        queried = learner.query(num_samples=self.budget)     # predict_proba on the pool + entropy
        query = time.perf_counter() - start
        inference = clf.seconds["predict"] - before
        s = clf.seconds
        seconds = {"init": s["init"], "train": fit - s["init"] - s["select"],
                   "select": s["select"], "eval": evaluation, "inference": inference,
                   "query": query - inference}
        steps = clf.num_epochs * math.ceil(len(initial_ids) / clf.mini_batch_size)
        return seconds, {"test_acc": test_acc, "dev_acc": dev_acc, "steps": steps,
                         "queried": sorted(int(i) for i in queried)}


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------

def warm_up(run: Run) -> None:
    """Pay one-off costs before any timing, so neither library's first round carries them.

    small-text reads the weights from disk at every fit: one load here puts the files in the OS
    cache. ``build_classifier`` loads our one in-memory copy (once per process). One training
    step and one inference pass set up the CPU kernels and thread pools both libraries share.
    """
    from small_text.integrations.transformers import TransformerModelArguments
    from small_text.integrations.transformers.utils.classification import \
        _initialize_transformer_components

    cfg = run.cfg
    with tempfile.TemporaryDirectory() as tmp:
        _initialize_transformer_components(TransformerModelArguments(
            resolve_backbone(cfg["backbone"])), run.data.num_classes, tmp)
    model = build_classifier(cfg["backbone"], run.data.num_classes, 0)
    ids, mask = collate(run.pool_tokens[:cfg["batch_size"]], run.pad_id, "cpu")
    model.train()
    model(ids, mask)[0].sum().backward()
    predict(model, run.pool_tokens[:cfg["eval_batch_size"]], run.pad_id, cfg["eval_batch_size"],
            cfg["amp"])


def summarise(per_repeat: list[dict]) -> dict:
    med = {k: statistics.median(r[k] for r in per_repeat) for k, _ in PHASES}
    med["round"] = statistics.median(sum(r[k] for k, _ in PHASES) for r in per_repeat)
    med["round_no_select"] = statistics.median(
        sum(r[k] for k, _ in PHASES if k != "select") for r in per_repeat)
    return med


def compare(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = our_config(args)
    result = {"settings": {}, "small_text": {"per_repeat": [], "info": []},
              "ours": {"per_repeat": [], "info": []}}
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
        ours = Ours(cfg, args.data_dir, out)
        st = SmallText(ours.run, args, cache)
        warm_up(ours.run)
        init_ids, init_y = ours.initial()
        for rep in range(args.repeats):
            order = [("ours", ours), ("small_text", st)]
            if rep % 2 == 1:                      # alternate who goes first
                order.reverse()
            for key, lib in order:
                seconds, info = lib.round() if key == "ours" else lib.round(init_ids, init_y)
                result[key]["per_repeat"].append(seconds)
                result[key]["info"].append(info)
                if args.verbose:
                    print(f"repeat {rep + 1} {lib.name}: {sum(seconds.values()):.2f}s "
                          f"test acc {info['test_acc']:.4f}", file=sys.stderr)
        run = ours.run
        lengths = [len(t) for t in run.pool_tokens]
        result["settings"] = {
            "dataset": cfg["dataset_name"], "backbone": resolve_backbone(cfg["backbone"]),
            "pool": len(run.pool_tokens), "dev": len(run.dev_tokens), "test": len(run.test_tokens),
            "initial_labels": len(init_ids), "budget": cfg["budget"], "epochs": cfg["epochs"],
            "batch_size": cfg["batch_size"], "lr": cfg["lr"], "max_length": cfg["max_length"],
            "eval_batch_size_ours": cfg["eval_batch_size"],
            "eval_batch_size_small_text": cfg["eval_batch_size"] if args.st_eval_batch == "matched"
            else cfg["batch_size"],
            "small_text_padded_width": st.width, "pool_mean_tokens": float(np.mean(lengths)),
            "threads": torch.get_num_threads(), "repeats": args.repeats, "seed": args.seed,
            "ours_bf16_autocast": bool(amp_enabled(torch.device("cpu"), cfg["amp"])),
            "versions": versions()}
    for key in ("small_text", "ours"):
        result[key]["median"] = summarise(result[key]["per_repeat"])
    st_med, our_med = result["small_text"]["median"], result["ours"]["median"]
    result["ratio"] = {k: st_med[k] / our_med[k] if our_med[k] > 0 else float("nan")
                       for k in st_med}
    a = set(result["small_text"]["info"][0]["queried"])
    b = set(result["ours"]["info"][0]["queried"])
    result["query_overlap"] = len(a & b) / len(a | b)
    return result


def versions() -> dict:
    import small_text
    import transformers

    return {"small_text": small_text.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__}


def report(result: dict) -> str:
    s = result["settings"]
    st, ours, ratio = result["small_text"]["median"], result["ours"]["median"], result["ratio"]
    rows = [("phase", "small-text s", "ours s", "ratio")]
    for key, label in (*PHASES, ("round", "round total"),
                       ("round_no_select", "round total without dev model selection")):
        rows.append((label, f"{st[key]:.3f}", f"{ours[key]:.3f}", f"{ratio[key]:.2f}x"))
    w = max(len(r[0]) for r in rows)
    lines = [
        f"One Entropy round on {s['dataset']}: pool {s['pool']}, {s['initial_labels']} labels "
        f"+ query {s['budget']}, {s['epochs']} epochs x batch {s['batch_size']} "
        f"({result['ours']['info'][0]['steps']} steps), lr {s['lr']}, max length "
        f"{s['max_length']}, dev {s['dev']}, test {s['test']}, {s['threads']} thread(s), "
        f"median of {s['repeats']} repeat(s)",
        f"versions: {', '.join(f'{k} {v}' for k, v in s['versions'].items())}; "
        f"ours bf16 autocast {'on' if s['ours_bf16_autocast'] else 'off'}, small-text fp32",
        "",
    ]
    lines += [f"{a:<{w}}  {b:>12}  {c:>8}  {d:>7}" for a, b, c, d in rows]
    lines.append(f"ratio = small-text / ours (above 1: ours is faster). Overall: "
                 f"{ratio['round']:.2f}x")
    for key, name in (("small_text", "small-text"), ("ours", "ours")):
        infos = result[key]["info"]
        totals = ", ".join(f"{sum(r.values()):.2f}" for r in result[key]["per_repeat"])
        test = ", ".join(f"{i['test_acc']:.4f}" for i in infos)
        dev = ", ".join(f"{i['dev_acc']:.4f}" for i in infos)
        lines.append(f"{name:<10} test acc {test}; dev acc {dev} ({infos[0]['steps']} steps); "
                     f"round s per repeat {totals}")
    lines.append(f"queried sets overlap (Jaccard, repeat 1): {result['query_overlap']:.2f}")
    lines.append(
        f"left in: small-text pads every text to {s['small_text_padded_width']} tokens "
        f"(pool mean {s['pool_mean_tokens']:.1f}), ours packs training texts without padding "
        f"and pads inference per batch; inference batch "
        f"{s['eval_batch_size_small_text']} (small-text) vs {s['eval_batch_size_ours']} (ours); "
        f"small-text reloads weights from disk and checkpoints to disk, ours in memory")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with DATASET/train.jsonl "
                   "(default: $ACTUNE_DATA)")
    p.add_argument("--dataset", default="trec")
    p.add_argument("--backbone", default="minilm", help="minilm, tiny (debugging) or a folder")
    p.add_argument("--pool-size", type=int, default=2000)
    p.add_argument("--initial", type=int, default=100, help="labelled set size")
    p.add_argument("--budget", type=int, default=100, help="points queried")
    p.add_argument("--epochs", type=int, default=6, help="default: the cpu preset's")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4, help="default: the cpu preset's")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--dev-size", type=int, default=300, help="default: the cpu preset's")
    p.add_argument("--test-size", type=int, default=500)
    p.add_argument("--eval-batch-size", type=int, default=256, help="default: the cpu preset's")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=1, help="rounds per library; medians reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", default="off", choices=("off", "auto", "bf16"),
                   help="our autocast (small-text has none): off = both fp32")
    p.add_argument("--st-padding", default="max_length", choices=("max_length", "longest"),
                   help="small-text row width: max length (as its from_arrays) or longest text")
    p.add_argument("--st-eval-batch", default="matched", choices=("matched", "native"),
                   help="small-text inference batch: ours (matched) or its training batch")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--verbose", action="store_true", help="a line per round on stderr")
    p.add_argument("--smoke", action="store_true",
                   help="seconds-long check that the script runs (tiny random backbone, small "
                        "sets, 1 epoch, 1 thread); overrides the sizes above")
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.pool_size, args.initial, args.budget = "tiny", 120, 20, 20
        args.epochs, args.dev_size, args.test_size, args.max_length = 1, 50, 50, 32
        args.eval_batch_size, args.threads, args.repeats = 64, 1, 1
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if importlib.util.find_spec("small_text") is None:
        print("error: small-text is not installed; this comparison needs it: "
              "pip install small-text==1.4.1", file=sys.stderr)
        sys.exit(2)
    warnings.filterwarnings("ignore", module="small_text")
    quiet_transformers()
    result = compare(args)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
