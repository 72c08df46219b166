"""The contract between the round loop and a method.

Each round the loop hands a method a read-only :class:`RoundView` (pool probabilities and
features from one inference pass, lazy extras, the labelled set, the budget, a seeded RNG) and
gets back a :class:`Selection`: ids to annotate and, optionally, pseudo-labels with weights.
State that lives across rounds (a memory bank) belongs to the method and is saved through
``state_dict``. A method that changes the training loss returns its own :class:`Objective`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# What the loop gives a method
# ----------------------------------------------------------------------------------------------

class PhaseTimer:
    """Wall time per named phase; a method times its own sub-phases with ``view.timer(...)``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class RoundView:
    """What a method sees in round ``round`` (1..rounds). Ids index the run's pool.

    ``probs``/``features`` cover the whole pool (labelled points included: CAL needs them);
    ``unlabelled_ids`` are the points whose gold label is still hidden, the only ones a method
    may query. Lazy extras (MC dropout, MLM surprisal, ...) are computed on first use and cached.
    """
    round: int
    rounds: int
    setting: str
    budget: int
    probs: torch.Tensor | None          # (n_pool, C) float32; None if the method needs none
    features: torch.Tensor | None       # (n_pool, d) float32
    labelled_ids: np.ndarray            # ids with a training label (gold, or weak in `weak`)
    labelled_y: np.ndarray
    unlabelled_ids: np.ndarray          # ids that may be queried
    rng: np.random.Generator
    dataset: str
    num_classes: int
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    extras: "Extras" = None
    allow_pseudo: bool = True           # False in the `al` setting: pseudo-labels are ignored

    @property
    def device(self) -> torch.device:
        """The round model's device: where a method's heavy selection maths should run."""
        found = self.extras.device if self.extras is not None else None
        return torch.device(found) if found is not None else torch.device("cpu")

    def mc_dropout(self, passes: int = 10) -> torch.Tensor:
        """(passes, n_pool, C) probabilities with dropout on; cached per pass count."""
        return self.extras.get(("mc_dropout", passes), lambda: self.extras.mc_dropout(passes))

    def cached(self, key, compute: Callable):
        """Compute a method's own extra once per round (e.g. gradient embeddings)."""
        return self.extras.get(key, compute)


class Extras:
    """Lazy, per-round extras bound to the round's model; the loop fills in the callables.

    Besides the round model (``head``, ``mc_dropout``) a method may use the run's pre-trained
    backbone: ``tokens`` are the pool's ids from its ``tokenizer`` (batch them with
    ``methods.batching``), ``from_pretrained(auto_class, **kwargs)`` loads it with a
    transformers Auto class, and ``cache_dir`` keeps a method's files between runs.
    """

    def __init__(self, mc_dropout: Callable[[int], torch.Tensor] | None = None,
                 tokens: list | None = None, texts: list[str] | None = None,
                 backbone: str | None = None, head: torch.nn.Module | None = None,
                 max_length: int | None = None, device: torch.device | None = None,
                 cache_key: str = "", tokenizer=None, from_pretrained: Callable | None = None,
                 cache_dir: Path | None = None):
        self.mc_dropout = mc_dropout
        self.tokens, self.texts, self.backbone, self.head = tokens, texts, backbone, head
        self.max_length, self.device, self.cache_key = max_length, device, cache_key
        self.tokenizer, self.from_pretrained, self.cache_dir = tokenizer, from_pretrained, cache_dir
        self._cache: dict = {}

    def get(self, key, compute: Callable):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass
class Selection:
    """A method's answer: ids to annotate and, optionally, pseudo-labels.

    ``pseudo_labels`` are class ids (n,) or soft targets (n, C); ``pseudo_weights`` default to 1.
    """
    query: np.ndarray
    pseudo_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pseudo_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pseudo_weights: np.ndarray | None = None

    def __post_init__(self):
        self.query = np.asarray(self.query, dtype=np.int64).reshape(-1)
        self.pseudo_ids = np.asarray(self.pseudo_ids, dtype=np.int64).reshape(-1)
        self.pseudo_labels = np.asarray(self.pseudo_labels)
        if len(self.pseudo_labels) != len(self.pseudo_ids):
            raise ValueError("pseudo_labels and pseudo_ids differ in length")
        if self.pseudo_weights is not None:
            self.pseudo_weights = np.asarray(self.pseudo_weights, dtype=np.float32).reshape(-1)
            if len(self.pseudo_weights) != len(self.pseudo_ids):
                raise ValueError("pseudo_weights and pseudo_ids differ in length")


# ----------------------------------------------------------------------------------------------
# Training loss
# ----------------------------------------------------------------------------------------------

@dataclass
class TrainBatch:
    """One training step's model outputs; the ``*_u`` fields are None without pseudo-labels."""
    step: int
    total_steps: int
    logits_l: torch.Tensor
    features_l: torch.Tensor
    y_l: torch.Tensor
    w_l: torch.Tensor
    logits_u: torch.Tensor | None = None
    features_u: torch.Tensor | None = None
    y_u: torch.Tensor | None = None     # class ids (B,) or soft targets (B, C)
    w_u: torch.Tensor | None = None
    ids_u: torch.Tensor | None = None   # pool ids of the pseudo-labelled batch
    inputs_u: tuple | None = None       # (input_ids, attention_mask) of that batch, for a teacher


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy for hard (B,) or soft (B, C) targets."""
    if target.dim() == 2:
        return -(target * F.log_softmax(logits.float(), -1)).sum(-1)
    return F.cross_entropy(logits.float(), target, reduction="none")


class Objective:
    """The training loss: :meth:`labelled_loss` + ``lam`` * :meth:`pseudo_loss`. The default is
    mean weighted CE on both batches; a method's objective overrides :meth:`pseudo_loss`."""

    def __init__(self, lam: float = 1.0):
        self.lam = lam

    def start(self, model: torch.nn.Module) -> None:
        """Called once before training (e.g. to keep a teacher copy)."""

    def diagnostics(self) -> dict:
        """Facts about what the loss did over the round (e.g. how often a mask passed), merged
        into the round's ``train`` record after training; JSON-serialisable values."""
        return {}

    @staticmethod
    def labelled_loss(batch: TrainBatch) -> torch.Tensor:
        """Mean weighted cross-entropy on the labelled batch: the first term of every objective
        (Eq. 1), which a method's own objective keeps as it is."""
        return (batch.w_l * cross_entropy(batch.logits_l, batch.y_l)).mean()

    def pseudo_loss(self, batch: TrainBatch) -> torch.Tensor | None:
        """The pseudo-labelled batch's term, before ``lam``; None: this batch adds nothing."""
        return (batch.w_u * cross_entropy(batch.logits_u, batch.y_u)).mean()

    def __call__(self, batch: TrainBatch) -> torch.Tensor:
        loss = self.labelled_loss(batch)
        if batch.logits_u is None:
            return loss
        pseudo = self.pseudo_loss(batch)
        return loss if pseudo is None else loss + self.lam * pseudo


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

class Method:
    """Base class: declare ``name``, ``params`` (defaults) and ``settings``; implement ``select``.

    ``params`` may be overridden per dataset with ``dataset_params`` (e.g. the paper's Table 2)
    and per run with ``--set NAME=VALUE``. ``cost`` is a one-line note for ``list``.

    What the analysis and the benchmark read (they never name a method):
    ``family`` places the method in the figures: ``AL``, ``SSAL`` (queries + pseudo-labels),
    ``ST`` (self-training on random labels), ``ours`` (compared with the baselines by default),
    or ``ablation`` / ``plug-in`` (variants of ours drawn in Fig. 5, not Fig. 1); empty = judged
    from the records. ``variant_of`` names the method an ablation or plug-in varies (Fig. 5b
    draws an ablation against it; ``--ours NAME`` takes in NAME's variants); ``plugin_of``
    names the method this one runs on top of (Fig. 5a, Fig. 6); ``queries_like`` (or, where it
    depends on the params, ``al_counterpart(params)``) names the method whose AL-setting run
    queries as this one's SSAL run does, so the analysis can show what the pseudo-labels add;
    ``overhead_phases`` are the ``view.timer`` phases that are the method's own cost, which
    ``bench`` reports as overhead.
    """
    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    variant_of: ClassVar[str] = ""
    queries_like: ClassVar[str] = ""
    overhead_phases: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[dict] = {}
    dataset_params: ClassVar[dict[str, dict]] = {}
    settings: ClassVar[tuple[str, ...]] = ("al", "ssal", "weak")
    cost: ClassVar[str] = "one inference pass"
    needs_inference: ClassVar[bool] = True   # False: the loop skips the pool pass (probs is None)

    def __init__(self, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.params)}")
        self.hp = {**self.params, **params}

    @classmethod
    def defaults(cls, dataset: str) -> dict:
        return {**cls.params, **cls.dataset_params.get(dataset, {})}

    @classmethod
    def plugin_of(cls, params: dict) -> str | None:
        """The method this one runs on top of with these ``params`` (a run's, as recorded in
        its ``config.json``), or None."""
        return None

    @classmethod
    def al_counterpart(cls, params: dict) -> str | None:
        """The method whose run in the AL setting queries as this one does in the SSAL setting
        with these ``params`` (itself, for a method run in both), or None: comparing the two
        shows what this method's pseudo-labels add on the same kind of queries. Default: the
        declared ``queries_like``."""
        return cls.queries_like or None

    def select(self, view: RoundView) -> Selection:
        raise NotImplementedError

    def objective(self, round: int, rounds: int) -> Objective:
        return Objective()

    def state_dict(self) -> dict:
        """State that lives across rounds (saved with the run's checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class UncertaintyMethod(Method):
    """A method defined by a per-point uncertainty score a(x) (higher = more uncertain).

    ``select`` queries the top-``budget`` unlabelled points; ACTUNE and the SSAL baselines reuse
    ``scores`` as their pluggable uncertainty, so any subclass serves as ACTUNE's a(x).
    """

    def scores(self, view: RoundView, ids: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def select(self, view: RoundView) -> Selection:
        ids = view.unlabelled_ids
        return Selection(query=top_k(self.scores(view, ids), ids, view.budget, view.rng))


def top_k(scores: torch.Tensor | np.ndarray, ids: np.ndarray, k: int,
          rng: np.random.Generator) -> np.ndarray:
    """The ``k`` ids with the highest scores; ties broken at random (seeded), never repeated."""
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, len(ids))
    jitter = rng.random(len(ids))
    order = np.lexsort((jitter, -scores))  # primary: score desc; secondary: random
    return np.asarray(ids)[order[:k]]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy -sum p ln p per row (0 ln 0 = 0)."""
    p = probs.float()
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """BALD mutual information H[mean_t p_t] - mean_t H[p_t] from (T, n, C) MC-dropout probabilities."""
    return (entropy(mc_probs.mean(0)) - entropy(mc_probs).mean(0)).clamp_min(0.0)
