"""ALPS (Yuan, Lin & Boyd-Graber 2020): active learning by processing surprisal.

A cold-start, model-free query strategy: it never looks at the fine-tuned classifier. Each text
x gets a *surprisal embedding* from the **pre-trained** masked language model: pass x unmasked
through the MLM, take the token cross-entropy -log p(x_i | x) at a random ~15% subset of its
non-special positions and 0 everywhere else (a vector as long as the maximum sequence length),
and L2-normalise it. Texts the language model finds surprising in similar places end up close.
K-means with k = b on the unlabelled pool's embeddings, then the point nearest each centroid is
queried: diverse (one per cluster) and representative (central in its cluster).

Backbones without a pre-trained MLM head (the offline all-MiniLM-L6-v2 ships only the encoder):
``AutoModelForMaskedLM.from_pretrained`` then initialises the head's transform (dense + layer
norm) and output bias at random, while the decoder weight stays tied to the word embeddings.
A random head gives meaningless surprisal, so we fit only those head parameters (encoder and
tied decoder frozen) with the standard MLM objective on the pool's own texts for
``head_fit_steps`` steps, cache the fitted head on disk (``mlm_heads`` in the cache folder the
loop hands over in ``view.extras``) and log that this happened. A backbone that ships its head
(roberta-base, bert-base) is used as is.

The fitted head is keyed by the run's ``cache_key`` (backbone and dataset) plus the pool's texts
and the fit settings: under the paper protocol the pool is the whole training split, so there is
one head per (backbone, dataset); with a seeded pool subsample (cpu preset) each pool gets its
own, so no run's result depends on which run happened to fit the head first.

Token surprisal does not change across rounds (the MLM is fixed), so it is computed once per run;
the random positions are re-drawn each round from ``view.rng``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .base import Extras, Method, RoundView, Selection
from .batching import collate, length_sorted_batches
from .registry import register

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# The pre-trained masked language model
# ----------------------------------------------------------------------------------------------

def mlm_head(mlm: torch.nn.Module) -> torch.nn.Module:
    """The module mapping encoder states (.., H) to vocabulary logits (.., V)."""
    for name in ("cls", "lm_head"):      # BERT-like / RoBERTa-like
        if hasattr(mlm, name):
            return getattr(mlm, name)
    raise NotImplementedError(f"ALPS: no MLM head module found on {type(mlm).__name__}")


def head_parameters(mlm: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Parameters outside the encoder: the head's own (the tied decoder weight is the encoder's)."""
    prefix = mlm.base_model_prefix + "."
    return {n: p for n, p in mlm.named_parameters() if not n.startswith(prefix)}


def load_mlm(from_pretrained: Callable, seed: int = 0) -> tuple[torch.nn.Module, list[str]]:
    """The pre-trained MLM in eval mode, and the head parameters the checkpoint lacked.

    ``from_pretrained(auto_class, **kwargs)`` loads the run's backbone (``view.extras``).
    Missing head parameters are initialised by transformers under ``seed`` (without touching
    the global torch RNG).
    """
    from transformers import AutoModelForMaskedLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlm, info = from_pretrained(AutoModelForMaskedLM, output_loading_info=True)
    prefix = mlm.base_model_prefix + "."
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))
    for p in mlm.parameters():
        p.requires_grad_(False)
    return mlm.eval(), missing


def _special_mask(ids: torch.Tensor, attention: torch.Tensor, special_ids) -> torch.Tensor:
    """True at real (non-padding) positions that are not special tokens."""
    special = torch.as_tensor(sorted(special_ids), dtype=ids.dtype, device=ids.device)
    return attention.bool() & ~torch.isin(ids, special)


def fit_mlm_head(mlm: torch.nn.Module, tokens: list[np.ndarray], tokenizer, steps: int,
                 lr: float = 1e-3, batch_size: int = 32, mask_prob: float = 0.15,
                 seed: int = 0, device=None) -> list[float]:
    """Fit only the MLM head (encoder and tied decoder frozen) with BERT's masking recipe.

    Each step masks ``mask_prob`` of a batch's non-special tokens (80% [MASK], 10% a random
    token, 10% unchanged) and minimises the cross-entropy at those positions only. AdamW with a
    linear decay. Returns the per-step losses.
    """
    device = device or torch.device("cpu")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    params = head_parameters(mlm)
    for p in mlm.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    head = mlm_head(mlm)
    opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(1, steps))
    pad_id = tokenizer.pad_token_id or 0
    losses = []
    mlm.eval()   # no dropout in the frozen encoder: its features are fixed functions of the input
    try:
        for _ in range(steps):
            batch = rng.choice(len(tokens), size=min(batch_size, len(tokens)), replace=False)
            ids, att = collate([tokens[i] for i in batch], pad_id, device)
            cand = _special_mask(ids, att, tokenizer.all_special_ids)
            chosen = cand & (torch.rand(ids.shape, generator=gen).to(device) < mask_prob)
            if not chosen.any():
                if not cand.any():
                    continue
                chosen.view(-1)[cand.view(-1).nonzero()[0]] = True
            u = torch.rand(ids.shape, generator=gen).to(device)
            inputs = ids.clone()
            inputs[chosen & (u < 0.8)] = tokenizer.mask_token_id
            rand = chosen & (u >= 0.8) & (u < 0.9)
            inputs[rand] = torch.randint(len(tokenizer), ids.shape, generator=gen).to(device)[rand]
            with torch.no_grad():
                hidden = mlm.base_model(input_ids=inputs, attention_mask=att).last_hidden_state
            loss = F.cross_entropy(head(hidden[chosen]).float(), ids[chosen])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    finally:
        for p in mlm.parameters():
            p.requires_grad_(False)
        mlm.eval()
    return losses


def _head_cache_path(folder: Path, cache_key: str, tokens: list[np.ndarray],
                     settings: dict) -> Path:
    """Order-independent digest of the pool's token sequences + the fit settings."""
    h = hashlib.sha1(f"{cache_key}|{sorted(settings.items())}".encode())
    for digest in sorted(hashlib.sha1(np.asarray(t, np.int64).tobytes()).digest() for t in tokens):
        h.update(digest)
    return Path(folder) / "mlm_heads" / f"{h.hexdigest()[:20]}.pt"


def pretrained_mlm(extras: Extras, steps: int, lr: float, batch_size: int, mask_prob: float,
                   timer=None) -> tuple[torch.nn.Module, str]:
    """The MLM for surprisal on ``extras.device`` and how its head came about: 'pretrained',
    'fitted' (on ``extras.tokens``) or 'cached'."""
    backbone, tokens, device = extras.backbone, extras.tokens, extras.device or "cpu"
    settings = dict(steps=int(steps), lr=float(lr), batch_size=int(batch_size),
                    mask_prob=float(mask_prob))
    path = _head_cache_path(extras.cache_dir, extras.cache_key, tokens, settings)
    seed = int.from_bytes(hashlib.sha1(path.name.encode()).digest()[:4], "little")
    mlm, missing = load_mlm(extras.from_pretrained, seed)
    if not missing:
        return mlm.to(device), "pretrained"
    names = head_parameters(mlm)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if set(state) != set(names):
            raise RuntimeError(f"ALPS: cached MLM head {path} does not match {backbone}")
        with torch.no_grad():
            for n, p in names.items():
                p.copy_(state[n])
        log.warning("ALPS: %s has no pre-trained MLM head; using the head fitted earlier on this "
                    "pool (%s)", backbone, path)
        return mlm.to(device), "cached"
    mlm.to(device)
    with (timer("mlm_head_fit") if timer else nullcontext()):
        losses = fit_mlm_head(mlm, tokens, extras.tokenizer, settings["steps"], lr, batch_size,
                              mask_prob, seed, extras.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({n: p.detach().cpu() for n, p in names.items()}, tmp)
    os.replace(tmp, path)
    first = np.mean(losses[:10]) if losses else float("nan")
    last = np.mean(losses[-10:]) if losses else float("nan")
    log.warning("ALPS: %s has no pre-trained MLM head (missing: %s); fitted the head only "
                "(encoder frozen, decoder tied to the word embeddings) for %d steps on %d pool "
                "texts, MLM loss %.2f -> %.2f; cached at %s", backbone, ", ".join(missing),
                len(losses), len(tokens), first, last, path)
    return mlm, "fitted"


# ----------------------------------------------------------------------------------------------
# Surprisal embeddings
# ----------------------------------------------------------------------------------------------

@torch.inference_mode()
def token_surprisal(mlm: torch.nn.Module, tokens: list[np.ndarray], special_ids, pad_id: int,
                    batch_size: int = 32, device=None) -> list[np.ndarray]:
    """Per text, -log p_MLM(x_i | x) at every position of the *unmasked* input (NaN at specials).

    Batched and length-sorted; vocabulary logits are computed only at non-special positions, so
    memory is O(batch tokens x V), not O(batch x max_length x V).
    """
    device = device or next(mlm.parameters()).device
    head = mlm_head(mlm)
    out: list[np.ndarray | None] = [None] * len(tokens)
    for idx in length_sorted_batches(tokens, batch_size):
        ids, att = collate([tokens[i] for i in idx], pad_id, device)
        keep = _special_mask(ids, att, special_ids)
        hidden = mlm.base_model(input_ids=ids, attention_mask=att).last_hidden_state
        ce = torch.full(ids.shape, float("nan"))
        if keep.any():
            logits = head(hidden[keep]).float()
            target = ids[keep]
            ce[keep.cpu()] = (torch.logsumexp(logits, -1)
                              - logits.gather(1, target[:, None]).squeeze(1)).cpu()
        for row, i in enumerate(idx):
            out[i] = ce[row, :len(tokens[i])].numpy().astype(np.float32)
    return out


def surprisal_embeddings(surprisal: list[np.ndarray], width: int, fraction: float,
                         rng: np.random.Generator) -> np.ndarray:
    """(n, width) L2-normalised vectors: surprisal at a random ``fraction`` of each text's
    non-special positions (at least one, rounded to nearest), 0 elsewhere.

    A fixed-size random subset per text (the paper's "random 15% subset of tokens"), so that a
    short text never ends up with an all-zero vector at the origin by chance.
    """
    n = len(surprisal)
    ce = np.full((n, width), np.nan, dtype=np.float64)
    for i, s in enumerate(surprisal):
        ce[i, :min(len(s), width)] = s[:width]
    valid = ~np.isnan(ce)
    n_valid = valid.sum(1)
    m = np.where(n_valid > 0, np.maximum(1, np.floor(fraction * n_valid + 0.5)), 0).astype(int)
    keys = np.where(valid, rng.random((n, width)), np.inf)      # random order of valid positions
    rank = keys.argsort(1).argsort(1)
    chosen = valid & (rank < m[:, None])
    emb = np.where(chosen, ce, 0.0)
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.divide(emb, norm, out=np.zeros_like(emb), where=norm > 0)


def nearest_to_centroids(emb: np.ndarray, k: int, rng: np.random.Generator,
                         n_init: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """K-means (k clusters, seeded from ``rng``), then one distinct point per centroid.

    Centroids are served in order of how close their nearest point is; each takes its nearest
    point not already taken (two centroids can share a nearest point when points repeat).
    Returns (row indices, centroids).
    """
    from sklearn.cluster import KMeans

    k = min(k, len(emb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # fewer distinct points than k: duplicate centroids
        km = KMeans(n_clusters=k, n_init=n_init, random_state=int(rng.integers(2**31 - 1)))
        km.fit(emb)
    centres = km.cluster_centers_
    dist = _sq_dist(centres, emb)                               # (k, n)
    picks = np.full(k, -1, dtype=np.int64)
    taken = np.zeros(len(emb), dtype=bool)
    for c in np.argsort(dist.min(1), kind="stable"):
        d = np.where(taken, np.inf, dist[c])
        picks[c] = int(d.argmin())
        taken[picks[c]] = True
    return picks, centres


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


# ----------------------------------------------------------------------------------------------
# The method
# ----------------------------------------------------------------------------------------------

@register("alps")
class ALPS(Method):
    family = "AL"
    params = {"mask_fraction": 0.15, "kmeans_n_init": 10, "batch_size": 32,
              "head_fit_steps": 300, "head_fit_lr": 1e-3, "head_fit_batch_size": 32}
    cost = ("no classifier inference; one pre-trained MLM pass over the pool per run + k-means "
            "(k=b); fits an MLM head once if the backbone has none (head_fit_steps)")
    needs_inference = False

    def __init__(self, **params):
        super().__init__(**params)
        self._surprisal: tuple | None = None   # (key, per-text token surprisal), once per run
        self.head_source: str | None = None

    def token_surprisal(self, view: RoundView) -> list[np.ndarray]:
        ex = view.extras
        key = (ex.cache_key, ex.backbone, len(ex.tokens))
        if self._surprisal is None or self._surprisal[0] != key:
            mlm, self.head_source = pretrained_mlm(
                ex, self.hp["head_fit_steps"], self.hp["head_fit_lr"],
                self.hp["head_fit_batch_size"], self.hp["mask_fraction"], view.timer)
            tok = ex.tokenizer
            with view.timer("surprisal"):
                values = token_surprisal(mlm, ex.tokens, tok.all_special_ids,
                                         tok.pad_token_id or 0, int(self.hp["batch_size"]),
                                         ex.device)
            self._surprisal = (key, values)
        return self._surprisal[1]

    def select(self, view: RoundView) -> Selection:
        ids = np.asarray(view.unlabelled_ids, dtype=np.int64)
        k = min(view.budget, len(ids))
        if k == len(ids):
            return Selection(query=ids)
        surprisal = self.token_surprisal(view)
        width = max([view.extras.max_length or 0] + [len(surprisal[i]) for i in ids])
        with view.timer("embedding"):
            emb = surprisal_embeddings([surprisal[i] for i in ids], width,
                                       float(self.hp["mask_fraction"]), view.rng)
        with view.timer("kmeans"):
            picks, _ = nearest_to_centroids(emb, k, view.rng, int(self.hp["kmeans_n_init"]))
        return Selection(query=ids[picks])
