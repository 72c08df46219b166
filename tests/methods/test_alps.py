"""ALPS: surprisal embeddings from the pre-trained MLM, k-means, the point nearest each centroid."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods import get_method
from methods.alps import (head_parameters, load_mlm, nearest_to_centroids, pretrained_mlm,
                          surprisal_embeddings, token_surprisal)
from methods.base import Extras

TEXTS = ["the team won the match", "a goal in the final minute", "the coach praised players",
         "fans cheered the striker", "the league title race", "the soup tasted of garlic",
         "bake the bread for an hour", "a recipe with fresh basil", "the chef grilled the fish",
         "sweet apple pie for dessert", "the new phone has a faster chip",
         "install the software update", "the server crashed overnight",
         "a laptop with more memory", "the app stores data"]


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> str:
    """A 2-layer BertForMaskedLM saved *with* its head (stands in for roberta-base)."""
    from transformers import BertConfig, BertForMaskedLM

    from benchmark.backbones import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-mlm")
    tok = load_tokenizer("minilm")
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def backbone_extras(backbone, texts, key="k") -> Extras:
    """The extras the loop hands a method for ``texts`` on ``backbone`` (no round model)."""
    from benchmark.backbones import backbone_extras, tokenize

    return Extras(tokens=tokenize(texts, backbone, 24, use_cache=False), texts=texts,
                  max_length=24, device=torch.device("cpu"), cache_key=key,
                  **backbone_extras(backbone))


def alps_view(make_view, backbone, texts, labelled=(), budget=3, seed=0, key="k"):
    return make_view(np.full((len(texts), 2), 0.5), labelled_ids=list(labelled), budget=budget,
                     seed=seed, extras=backbone_extras(backbone, texts, key))


# ----------------------------------------------------------------------------------------------
# Surprisal embeddings
# ----------------------------------------------------------------------------------------------

def test_alps_surprisal_vector_is_zero_off_the_sampled_positions():
    rng = np.random.default_rng(0)
    nan = np.nan
    surprisal = [np.array([nan, 2.0, 3.0, 1.0, 4.0, 5.0, 6.0, 2.5, 1.5, 3.5, 0.5, 7.0, 8.0, nan]),
                 np.array([nan, 1.0, 2.0, nan]),
                 np.array([nan, nan])]                          # nothing but special tokens
    emb = surprisal_embeddings(surprisal, 16, 0.15, rng)
    assert emb.shape == (3, 16)
    # 12 real tokens -> round(1.8) = 2 sampled; 2 real tokens -> at least 1; specials never
    assert (emb[0] != 0).sum() == 2 and (emb[1] != 0).sum() == 1 and (emb[2] == 0).all()
    for row, s in zip(emb[:2], surprisal):
        on = np.flatnonzero(row)
        assert not np.isnan(s[on]).any()                        # only non-special positions
        assert np.allclose(row[on], s[on] / np.linalg.norm(s[on]))   # CE there, L2-normalised
        assert np.linalg.norm(row) == pytest.approx(1.0)
        assert (row[len(s):] == 0).all()                        # padding stays 0


def test_alps_sampled_positions_are_uniform_over_non_special_tokens():
    s = [np.array([np.nan] + [1.0] * 10 + [np.nan])] * 4000
    emb = surprisal_embeddings(s, 12, 0.15, np.random.default_rng(1))
    freq = (emb != 0).mean(0)
    assert freq[0] == 0 and freq[11] == 0
    assert np.allclose(freq[1:11], 0.2, atol=0.03)              # round(1.5) = 2 of 10 positions


def test_alps_token_surprisal_is_the_unmasked_mlm_cross_entropy(tiny_mlm):
    extras = backbone_extras(tiny_mlm, TEXTS[:5])
    tok, tokens = extras.tokenizer, extras.tokens
    mlm, missing = load_mlm(extras.from_pretrained)
    assert missing == []
    batched = token_surprisal(mlm, tokens, tok.all_special_ids, tok.pad_token_id, batch_size=3)
    for t, s in zip(tokens, batched):
        ids = torch.as_tensor(t, dtype=torch.long)[None]
        with torch.no_grad():
            logits = mlm(input_ids=ids).logits[0]
        ce = F.cross_entropy(logits, ids[0], reduction="none").numpy()
        assert np.isnan(s[0]) and np.isnan(s[-1])               # [CLS], [SEP]
        assert np.allclose(s[1:-1], ce[1:-1], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Where the MLM comes from
# ----------------------------------------------------------------------------------------------

def test_alps_uses_a_shipped_mlm_head_as_is(tiny_mlm, caplog, tmp_path):
    from transformers import BertForMaskedLM

    saved = BertForMaskedLM.from_pretrained(tiny_mlm)
    extras = backbone_extras(tiny_mlm, TEXTS, f"shipped|{tmp_path}")
    heads = lambda: sorted((extras.cache_dir / "mlm_heads").glob("*"))
    before = heads()
    with caplog.at_level(logging.WARNING, logger="methods.alps"):
        mlm, how = pretrained_mlm(extras, 5, 1e-3, 4, 0.15)
    assert how == "pretrained" and not caplog.records and heads() == before   # nothing fitted
    for name, p in head_parameters(mlm).items():
        assert torch.equal(p, dict(saved.named_parameters())[name])


def test_alps_fits_only_the_head_when_the_backbone_has_none(tiny_backbone, caplog, tmp_path):
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(tiny_backbone)
    extras = backbone_extras(tiny_backbone, TEXTS * 4, f"fit|{tmp_path}")
    init, missing = load_mlm(extras.from_pretrained, seed=0)
    assert missing and all(not k.startswith("bert.") for k in missing)
    tokens = extras.tokens
    with caplog.at_level(logging.WARNING, logger="methods.alps"):
        mlm, how = pretrained_mlm(extras, 30, 1e-2, 8, 0.15)
    assert how == "fitted"
    assert any("no pre-trained MLM head" in r.getMessage() for r in caplog.records)
    # encoder frozen: every encoder weight is still the pre-trained one
    pretrained = encoder.state_dict()
    for name, p in mlm.base_model.state_dict().items():
        assert torch.equal(p, pretrained[name]), name
    # decoder tied to the (unchanged) word embeddings
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    # the head itself moved, and it predicts the pool's tokens better than the random one did
    fitted = head_parameters(mlm)
    assert any(not torch.equal(p, head_parameters(init)[n]) for n, p in fitted.items())
    before = np.nanmean(np.concatenate(token_surprisal(init, tokens, [101, 102], 0)))
    after = np.nanmean(np.concatenate(token_surprisal(mlm, tokens, [101, 102], 0)))
    assert after < before
    # a second run on the same pool loads the cached head instead of fitting again
    caplog.clear()
    extras.tokens = tokens[::-1]
    again, how = pretrained_mlm(extras, 30, 1e-2, 8, 0.15)
    assert how == "cached"
    for n, p in head_parameters(again).items():
        assert torch.equal(p, fitted[n])


# ----------------------------------------------------------------------------------------------
# K-means and the picks
# ----------------------------------------------------------------------------------------------

def test_alps_picks_are_the_points_nearest_each_centroid():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 5
    emb = np.concatenate([c + rng.normal(scale=0.3, size=(15, 4)) for c in centres])
    picks, fitted = nearest_to_centroids(emb, 4, np.random.default_rng(1))
    assert len(set(picks.tolist())) == 4
    assert sorted(p // 15 for p in picks) == [0, 1, 2, 3]         # one per cluster
    for c, p in zip(fitted, picks):
        assert p == np.argmin(((emb - c) ** 2).sum(1))         # the centroid's nearest point


def test_alps_duplicate_points_give_distinct_picks():
    emb = np.repeat(np.eye(3), 5, axis=0)                       # 3 distinct points, 5 copies each
    picks, _ = nearest_to_centroids(emb, 6, np.random.default_rng(0))
    assert len(set(picks.tolist())) == 6


def test_alps_select_budget_no_requery_determinism(make_view, tiny_mlm):
    texts = TEXTS + TEXTS[:3]                                   # duplicate texts included
    lab = [0, 5, 10]
    picks = []
    for seed in (4, 4, 9):
        view = alps_view(make_view, tiny_mlm, texts, lab, budget=5, seed=seed)
        alps = get_method("alps")()
        q = alps.select(view).query
        assert alps.head_source == "pretrained"
        assert len(q) == 5 and len(set(q)) == 5 and not set(q) & set(lab)
        picks.append(q)
    assert np.array_equal(picks[0], picks[1]) and not np.array_equal(picks[0], picks[2])
    assert {"surprisal", "embedding", "kmeans"} <= set(view.timer.seconds)
    # the classifier is never consulted: ALPS runs without the pool inference pass
    assert get_method("alps").needs_inference is False
    view = alps_view(make_view, tiny_mlm, texts[:6], [0, 1, 2], budget=5)
    assert sorted(get_method("alps")().select(view).query.tolist()) == [3, 4, 5]


def test_alps_end_to_end_fits_the_head_once(tiny_overrides, toy_data, tmp_path):
    from benchmark.config import resolve
    from benchmark.loop import Run

    cfg = resolve("alps", str(toy_data), 0, "al", "smoke",
                  dict(tiny_overrides, head_fit_steps=5, head_fit_batch_size=8))
    records = Run(cfg, tmp_path / "runs", device="cpu", log=lambda *a: None).run()
    assert [r["n_queried"] for r in records[1:]] == [8, 8]
    assert "mlm_head_fit" in records[1]["time"] and "mlm_head_fit" not in records[2]["time"]
    assert "inference" not in records[1]["time"]
