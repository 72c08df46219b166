"""The round loop (Algorithm 1): train -> evaluate -> infer on the pool -> the method selects.

Round 0 fine-tunes on the initial labels; each round t = 1..T trains a fresh model on the
labelled (+ pseudo-labelled) data chosen at the end of round t-1. After every round the
:class:`RoundState` (labels, pseudo-labels, the method's state, records) is checkpointed, so a
killed run resumes from its last finished round and ends with the same records as an
uninterrupted one: every random draw is seeded from (seed, round), never from a generator
carried across rounds.

The phases are public, for tools that time or inspect one round (``benchmark bench``, the
scripts): :meth:`Run.prepare`, :meth:`Run.initial_state`, :meth:`Run.train_round`,
:meth:`Run.select`.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from methods import get_method
from methods.base import Extras, PhaseTimer, RoundView, Selection

from .backbones import (backbone_extras, build_classifier, compact_vocabulary, default_device,
                        load_tokenizer, mc_dropout_probs, predict, remap_tokens, tokenize)
from .config import ConfigError, check_sources
from .data import load_dataset
from .device import describe, device_info, precision
from .progress import RunProgress
from .results import RunIOError, RunStore
from .settings import SETTINGS
from .training import TrainSet, evaluate, fine_tune, training_steps


def derive_seed(*keys) -> int:
    """A 32-bit seed from the run seed and a purpose, stable across processes and resumes."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:4], "little")


def pseudo_digest(ids: np.ndarray, labels: np.ndarray) -> str:
    """A short fingerprint of a pseudo-label set (ids in order, labels): records stay small,
    and a regression test still sees any change in which texts got which pseudo-label."""
    h = hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(np.round(np.asarray(labels, dtype=np.float64), 6)).tobytes())
    return h.hexdigest()[:16]


def parse_device(name: str) -> torch.device:
    """``--device``: a torch device this machine has, or one clear error."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device on this machine")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device


@dataclass
class Pseudo:
    """Pseudo-labels chosen for the next round's training (ids into the pool)."""
    ids: np.ndarray
    labels: np.ndarray                  # class ids (n,) or soft targets (n, C)
    weights: np.ndarray | None = None


@dataclass
class Selected:
    """What choosing round t's data found, for round t's record (round 0: the initial labels)."""
    queried: list[int]                  # ids whose gold label the oracle revealed for round t
    time: dict[str, float]              # seconds per selection phase, ``select_total`` included
    info: dict                          # record fields: pseudo-label facts, weak-label facts


@dataclass
class RoundState:
    """What carries from one round to the next; saved whole with every checkpoint."""
    labels: dict[int, int]              # pool id -> training label (gold, or weak)
    clean: list[int]                    # sorted ids with a revealed gold label (the budget's)
    selected: Selected                  # what the next round trains on was chosen so
    method: dict                        # the method's ``state_dict`` after the last round
    pool_idx: np.ndarray                # the run's pool: a checkpoint of another is not resumed
    pseudo: Pseudo | None = None
    round: int = -1                     # the last finished round
    records: list[dict] = field(default_factory=list)
    round0_only: bool = False           # labels outside ``clean`` train round 0 only

    def labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, labels) of the labelled set, in the order the labels were given."""
        ids = np.fromiter(self.labels, dtype=np.int64, count=len(self.labels))
        return ids, np.array([self.labels[i] for i in ids], dtype=np.int64)

    def to_checkpoint(self) -> dict:
        """Plain containers (``weights_only`` reads them back), under the keys checkpoints have
        always had, so a run checkpointed by an older checkout resumes."""
        p = self.pseudo
        return {"round": self.round, "labels": self.labels, "clean": self.clean,
                "pseudo": None if p is None else {"ids": p.ids, "labels": p.labels,
                                                  "weights": p.weights},
                "records": self.records, "round0_only": self.round0_only,
                "pending": {"queried": self.selected.queried, "time": self.selected.time,
                            "info": self.selected.info},
                "method": self.method, "pool_idx": self.pool_idx}

    @classmethod
    def from_checkpoint(cls, d: dict) -> RoundState:
        p = d["pseudo"]
        return cls(labels=d["labels"], clean=d["clean"], selected=Selected(**d["pending"]),
                   method=d["method"], pool_idx=d["pool_idx"],
                   pseudo=None if p is None else Pseudo(p["ids"], p["labels"], p["weights"]),
                   round=d["round"], records=d["records"],
                   round0_only=d.get("round0_only", False))


def _subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


class Run:
    """One (method, dataset, seed, setting, preset) run writing into its run folder."""

    def __init__(self, cfg: dict, out: str | Path, data_dir: str | None = None,
                 device: str | torch.device | None = None, log=print, stream=None):
        """``log`` takes the per-round lines; ``stream`` (default stderr) shows the progress
        bar when it is a terminal."""
        self.cfg, self.log, self.stream = cfg, log, stream
        self.device = parse_device(device) if device else default_device()
        self.store = RunStore(out, cfg, self.device)
        self.setting = SETTINGS.get(cfg["setting"])
        self.method = get_method(cfg["method"])(**cfg["params"])
        self.data_dir = data_dir
        self.data = None

    # -------------------------------------------------------------------------------------------
    def _load_data(self):
        """The dataset, the run's pool and the budget check: bad data fails here, before the
        run folder is made."""
        if self.data is not None:
            return
        cfg = self.cfg
        data = load_dataset(cfg["dataset"], self.data_dir, cfg["dev_size"],
                            with_weak=self.setting.needs_weak_labels)
        self.pool_idx = _subsample(len(data.train), cfg["pool_size"],
                                   derive_seed(cfg["seed"], "pool"))
        self.pool_y = data.train.labels[self.pool_idx]
        need = cfg["initial_size"] + cfg["rounds"] * cfg["budget"]
        if self.setting.counts_initial and need > len(self.pool_idx):
            raise ValueError(f"budget too large: {cfg['initial_size']} initial + {cfg['rounds']} "
                             f"rounds x {cfg['budget']} = {need} labels, but the pool has only "
                             f"{len(self.pool_idx)} texts")
        self.data = data

    def prepare(self) -> None:
        """Data, pool and tokenisation: everything a round needs before it trains."""
        cfg = self.cfg
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg["threads"]))
        self._load_data()
        data = self.data
        test_idx = _subsample(len(data.test), cfg["test_size"], derive_seed(0, "test"))
        bb, L = cfg["backbone"], cfg["max_length"]
        self.pad_id = load_tokenizer(bb).pad_token_id or 0
        self.pool_texts = [data.train.texts[i] for i in self.pool_idx]
        self.raw_pool_tokens = tokenize(self.pool_texts, bb, L)  # tokenizer ids (e.g. for an MLM)
        self.pool_tokens = self.raw_pool_tokens
        self.dev_tokens, self.dev_y = tokenize(data.dev.texts, bb, L), data.dev.labels
        self.test_tokens = tokenize([data.test.texts[i] for i in test_idx], bb, L)
        self.test_y = data.test.labels[test_idx]
        self.vocab = None
        if cfg.get("compact_vocab", True):
            self.vocab = compact_vocabulary(
                [self.pool_tokens, self.dev_tokens, self.test_tokens], self.pad_id)
            self.pool_tokens, self.dev_tokens, self.test_tokens = (
                remap_tokens(t, self.vocab)
                for t in (self.pool_tokens, self.dev_tokens, self.test_tokens))

    def initial_state(self) -> RoundState:
        """Round 0's state: the setting's initial labels (after :meth:`prepare`)."""
        rng = np.random.default_rng(derive_seed(self.cfg["seed"], "initial"))
        init = self.setting.initial(self.pool_y, self.cfg["initial_size"], rng,
                                    dataset=self.data, pool_idx=self.pool_idx, cfg=self.cfg)
        return RoundState(labels=dict(zip(init.ids.tolist(), init.labels.tolist())),
                          clean=sorted(init.clean.tolist()),
                          selected=Selected(init.clean.tolist(), {}, init.info),
                          method=self.method.state_dict(), pool_idx=self.pool_idx,
                          round0_only=init.round0_only)

    def training_sets(self, state: RoundState) -> tuple[TrainSet, TrainSet | None]:
        """The labelled set and, where the setting trains on them, the pseudo-labels."""
        labelled = TrainSet(self.pool_tokens, *state.labelled())
        p = state.pseudo
        if p is None or not self.setting.allow_pseudo:
            return labelled, None
        return labelled, TrainSet(self.pool_tokens, p.ids, p.labels, p.weights)

    # -------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Backbone and dataset reachable, data readable, budget payable: else one clear error,
        before any folder is written (a finished run needs none of them)."""
        if not self.store.complete:
            check_sources(self.cfg, self.data_dir)
            self._load_data()
            self._check_precision()

    def _check_precision(self) -> None:
        """A resume continues at the precision its recorded rounds used: ``amp: auto`` is bf16
        on one machine and fp32 on another, and a run with rounds of both is neither's result."""
        had, info = self.store.resumed_precision(), device_info(self.device, self.cfg)
        now = precision(info["bf16_autocast"])
        if had not in (None, now):
            raise ConfigError(
                f"{self.store.path.name}: its recorded rounds ran in {had} "
                f"(amp={self.cfg['amp']}), and {describe(info)} would continue in {now}; resume "
                "it on a machine like the one it started on (the device is in its meta.json), "
                "or delete its folder to start it over here")

    def run(self) -> list[dict]:
        """Run or resume, as the only writer of the run folder (:class:`RunBusy` otherwise).

        An unreachable backbone or dataset, bad data or a budget the pool cannot pay fail
        before the folder exists. A folder marked done whose records lack a round (or repeat
        one) is damaged: it is recomputed, never reported as finished.
        """
        self.check()
        with self.store.lock():
            self.store.open()
            if self.store.complete:
                self.log("already done")
                return self.store.records()
            if self.store.done:
                self.log(f"marked done but damaged ({'; '.join(self.store.problems())}): "
                         "recomputing it from round 0 (a finished run keeps no checkpoint)")
                self.store.unmark_done()
            self.store.clear_failed()
            try:
                self.store.record_start()
                return self._run()
            except Exception as exc:  # not KeyboardInterrupt/SystemExit: a requeue is no failure
                with contextlib.suppress(OSError):  # a read-only folder takes no marker
                    self.store.mark_failed("".join(traceback.format_exception(exc)))
                if isinstance(exc, OSError):
                    recorded = len(self.store.records())
                    raise RunIOError(
                        f"{exc.filename or self.store.path}: {exc.strerror or exc}; the run "
                        f"stopped with {recorded} of {self.cfg['rounds'] + 1} rounds recorded and "
                        "resumes from there when the same command runs again") from exc
                raise

    def _run(self) -> list[dict]:
        cfg = self.cfg
        self.prepare()
        saved = self.store.load_checkpoint()
        if saved is None or not np.array_equal(saved["pool_idx"], self.pool_idx):
            state = self.initial_state()
        else:
            state = RoundState.from_checkpoint(saved)
            self.method.load_state_dict(state.method)
            self.log(f"resuming after round {state.round}")
        self.store.rewrite(state.records)  # drop anything written after the checkpoint
        T = cfg["rounds"]
        progress = RunProgress(cfg, state.round + 1, len(state.labels),
                               self.setting.allow_pseudo, self.stream)
        try:
            for t in range(state.round + 1, T + 1):
                record, model = self.train_round(t, state, progress)
                if t < T:
                    self.select(t + 1, model, state)
                state.round = t
                state.records.append(record)
                state.method = self.method.state_dict()
                self.store.save_checkpoint(state.to_checkpoint())
                self.store.append(record)
                progress.end_round(t, len(state.labels), self._pseudo_next(state))
                progress.write(
                    f"round {t:2d}/{T}  labels {record['n_labels']:5d}  pseudo "
                    f"{record['n_pseudo']:5d}  dev acc {record['dev_acc']:.4f}  test acc "
                    f"{record['test_acc']:.4f}  ({record['train']['steps']} steps, "
                    f"{record['time']['round']:.1f}s; {progress.times()})", self.log)
        finally:
            progress.close()
        self.store.mark_done()
        return state.records

    def _pseudo_next(self, state: RoundState) -> bool:
        p = state.pseudo
        return self.setting.allow_pseudo and p is not None and len(p.ids) > 0

    def train_round(self, t: int, state: RoundState, progress: RunProgress | None = None):
        """Round t: fine-tune a fresh model on ``state``'s data and evaluate it.
        Returns (the round's record, the model); ``state`` is not changed."""
        cfg, seed = self.cfg, self.cfg["seed"]
        timer = PhaseTimer()
        start = time.perf_counter()
        labelled, pseudo = self.training_sets(state)
        model = build_classifier(cfg["backbone"], self.data.num_classes,
                                 derive_seed(seed, t, "init"), cfg["dropout"], cfg["pooling"],
                                 self.vocab).to(self.device)
        if progress is not None:
            with_pseudo = pseudo is not None and len(pseudo) > 0
            progress.start_round(t, training_steps(cfg, len(labelled), int(with_pseudo)), with_pseudo)
        with timer("train"):
            info = fine_tune(model, labelled, self.dev_tokens, self.dev_y, cfg,
                             derive_seed(seed, t, "train"), self.pad_id, pseudo,
                             self.method.objective(t, cfg["rounds"]), progress)
        with timer("eval"):
            dev = evaluate(model, self.dev_tokens, self.dev_y, self.pad_id,
                           cfg["eval_batch_size"], cfg["amp"])
            test = evaluate(model, self.test_tokens, self.test_y, self.pad_id,
                            cfg["eval_batch_size"], cfg["amp"])
        seconds = time.perf_counter() - start
        record = self.round_record(t, state, len(labelled), 0 if pseudo is None else len(pseudo),
                                   info, dev, test, timer.seconds, seconds)
        return record, model

    def round_record(self, t: int, state: RoundState, n_train: int, n_pseudo: int, train: dict,
                     dev: dict, test: dict, phases: dict, seconds: float) -> dict:
        """Round t's record: its training (``train``, ``phases``, ``seconds``), its scores,
        and what choosing its data found (``state.selected``)."""
        cfg, selected = self.cfg, state.selected
        times = {**selected.time, **phases}
        times["round"] = seconds + selected.time.get("select_total", 0.0)
        return {
            "method": cfg["method"], "dataset": cfg["dataset_name"], "seed": cfg["seed"],
            "setting": cfg["setting"], "preset": cfg["preset"], "backbone": cfg["backbone"],
            "config_hash": self.store.hash, "round": t, "n_labels": len(state.clean),
            "n_train_labels": n_train, "n_queried": len(selected.queried), "n_pseudo": n_pseudo,
            "pseudo_acc": selected.info.get("pseudo_acc") if n_pseudo else None,
            "dev_acc": dev["acc"], "dev_f1": dev["f1"], "test_acc": test["acc"],
            "test_f1": test["f1"], "time": times, "train": train,
            "queried_ids": [int(i) for i in selected.queried],
            **{k: v for k, v in selected.info.items() if k != "pseudo_acc"},
        }

    def select(self, t: int, model, state: RoundState) -> None:
        """With the model of round t-1, choose round t's queries and pseudo-labels: the oracle's
        labels join ``state``, and ``state.pseudo`` and ``state.selected`` are round t's."""
        cfg = self.cfg
        timer = PhaseTimer()
        start = time.perf_counter()
        probs = feats = None
        if self.method.needs_inference:
            with timer("inference"):
                probs, feats = predict(model, self.pool_tokens, self.pad_id,
                                       cfg["eval_batch_size"], cfg["amp"])
        clean = np.asarray(state.clean, dtype=np.int64)
        unlabelled = np.setdiff1d(np.arange(len(self.pool_idx)), clean)
        lab_ids, lab_y = state.labelled()
        extras = Extras(
            mc_dropout=lambda passes: mc_dropout_probs(model, self.pool_tokens, self.pad_id, passes,
                                                       cfg["eval_batch_size"], cfg["amp"]),
            tokens=self.raw_pool_tokens, texts=self.pool_texts, head=model.head,
            max_length=cfg["max_length"], device=self.device,
            cache_key=f"{cfg['backbone']}|{self.data.fingerprint()}",
            **backbone_extras(cfg["backbone"]))
        view = RoundView(
            round=t, rounds=cfg["rounds"], setting=cfg["setting"],
            budget=min(cfg["budget"], len(unlabelled)), probs=probs, features=feats,
            labelled_ids=lab_ids, labelled_y=lab_y,
            unlabelled_ids=unlabelled, rng=np.random.default_rng(derive_seed(cfg["seed"], t, "select")),
            dataset=cfg["dataset_name"], num_classes=self.data.num_classes, timer=timer,
            extras=extras, allow_pseudo=self.setting.allow_pseudo)
        with timer("query"):
            sel = self.method.select(view)
        self._check(sel, view)
        info = {}
        for i in sel.query.tolist():
            state.labels[i] = int(self.pool_y[i])  # the oracle reveals the gold label
        state.clean = sorted(set(state.clean) | set(sel.query.tolist()))
        if state.round0_only:  # the initial labels trained round 0 only (weak_labels=init)
            state.round0_only = False
            state.labels = {i: state.labels[i] for i in state.clean}
        state.pseudo = None
        if len(sel.pseudo_ids) and self.setting.allow_pseudo:
            keep = ~np.isin(sel.pseudo_ids, sel.query)
            ids, labels = sel.pseudo_ids[keep], sel.pseudo_labels[keep]
            weights = None if sel.pseudo_weights is None else sel.pseudo_weights[keep]
            hard = np.asarray(labels if labels.ndim == 1 else labels.argmax(-1), dtype=np.int64)
            info["pseudo_acc"] = float((hard == self.pool_y[ids]).mean()) if len(ids) else None
            info["pseudo_digest"] = pseudo_digest(ids, labels)
            # class balance of the pseudo-labels, against their hidden gold labels and the pool's
            C = self.data.num_classes
            info["pseudo_hist"] = np.bincount(hard, minlength=C).tolist()
            info["pseudo_gold_hist"] = np.bincount(self.pool_y[ids], minlength=C).tolist()
            info["pool_gold_hist"] = np.bincount(self.pool_y, minlength=C).tolist()
            state.pseudo = Pseudo(ids, labels, weights)
        if cfg.get("save_features") and t == 1 and feats is not None:
            np.savez_compressed(self.store.path / f"features_round{t}.npz",
                                features=feats.half().numpy(), labels=self.pool_y,
                                queried=sel.query, labelled=lab_ids)
        times = dict(timer.seconds)
        times["select_total"] = time.perf_counter() - start
        state.selected = Selected(sel.query.tolist(), times, info)

    @staticmethod
    def _check(sel: Selection, view: RoundView) -> None:
        q = sel.query
        if len(q) != view.budget:
            raise RuntimeError(f"method returned {len(q)} queries for a budget of {view.budget}")
        if len(np.unique(q)) != len(q):
            raise RuntimeError("method queried the same id twice")
        if not np.isin(q, view.unlabelled_ids).all():
            raise RuntimeError("method queried an id that is labelled or outside the pool")


def run_experiment(cfg: dict, out: str | Path, data_dir: str | None = None, device=None,
                   log=print, stream=None) -> list[dict]:
    return Run(cfg, out, data_dir, device, log, stream).run()
