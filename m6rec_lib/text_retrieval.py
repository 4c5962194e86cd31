"""Scoring products from their descriptions: the path to products no ID model knows.

A product first sold after the training period (:mod:`m6rec_lib.new_products`) has no ID vector,
but it has a description from the day it goes on sale. Two pretrained text models turn a customer's
history and a product's description into a score (notebooks 05 and 08):

* **the course's GPT** (notebook 04): the history written as text, ending in " Now buys", then the
  product's description; the score is the **length-normalised log-likelihood** of the description,
  ``(1/m) sum_t log p(c_t | history, c_<t)`` (:func:`gpt_scores`);
* **all-MiniLM-L6-v2**, a sentence encoder pretrained on about a billion sentence pairs (notebook 08):
  every description becomes a unit vector; a customer is scored against a product by the cosine
  with the mean of their recent products (*profile*) or with their closest recent products
  (:func:`minilm_scores`).

Both return an ``(n, n_items + 1)`` matrix over a :class:`~m6rec_lib.new_products.Catalogue`, with
``-inf`` outside the products asked for, and both are cached (the GPT's by the checkpoint, the
customers and their moments, the products), so a notebook pays for them once.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import sentence_encoder as se
from .data import EvalSet
from .text import serializer as ser
from .text_scorer import history_prefixes

if TYPE_CHECKING:
    import pandas as pd

    from .new_products import Catalogue
    from .pretraining import Pretrained

__all__ = ["catalogue_embeddings", "minilm_scores", "gpt_scores", "standardise_over", "new_product_scorers"]


def _fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def catalogue_embeddings(catalogue: "Catalogue") -> np.ndarray:
    """(n_items + 1, 384) unit MiniLM vectors of every product's description; row 0 = padding (zeros).

    Cached by the texts (:func:`m6rec_lib.sentence_encoder.cached_embeddings`).
    """
    E = se.cached_embeddings([str(t) for t in catalogue.texts[1:]])
    return np.vstack([np.zeros((1, E.shape[1]), dtype=np.float32), E])


def minilm_scores(embeddings: np.ndarray, eval_set: EvalSet, items: np.ndarray, kind: str = "profile",
                  last_n: int = 20) -> np.ndarray:
    """MiniLM scores of the products ``items`` (item IDs) for every customer of ``eval_set``.

    ``kind="profile"``: cosine with the mean vector of the customer's last ``last_n`` distinct
    products; ``"closest"``: mean of the 3 largest cosines with them. Returns (n, n_items + 1), -inf
    outside ``items``.
    """
    if kind == "profile":
        return se.profile_scores(embeddings, eval_set.sequences, last_n=last_n, candidates=items)
    if kind == "closest":
        return se.max_similarity_scores(embeddings, eval_set.sequences, last_n=last_n, candidates=items)
    raise ValueError(f"kind must be 'profile' or 'closest', got {kind!r}")


def gpt_scores(
    pretrained: "Pretrained",
    catalogue: "Catalogue",
    lines: "pd.DataFrame",
    customer_ids: Sequence[int],
    eval_set: EvalSet,
    allowed: np.ndarray,
    max_candidate_tokens: int = 16,
    progress: bool = True,
    cache: bool | None = None,
) -> np.ndarray:
    """The GPT's length-normalised log-likelihood of each allowed product's description.

    ``customer_ids``: the customers of ``eval_set`` (in its order); ``allowed``: (n, n_items + 1)
    bool, the products to score for each customer (e.g. new products on sale). The history prefix
    of a customer is computed once (its keys and values cached) and shared by all their products.
    Returns (n, n_items + 1) float64, -inf where not allowed. Cached in ``cache_dir()`` when
    ``cache`` (default: for two customers or more; one request is not worth a file).
    """
    from .training import cached_artifact

    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != (len(eval_set), catalogue.n_items + 1):
        raise ValueError(f"allowed must be ({len(eval_set)}, {catalogue.n_items + 1}), got {allowed.shape}")
    if len(customer_ids) != len(eval_set):
        raise ValueError(f"{len(customer_ids)} customer IDs for {len(eval_set)} eval-set customers")
    model, tok = pretrained.model, pretrained.tokenizer
    key = {"checkpoint": pretrained.path.name, "customers": _fingerprint(np.asarray(customer_ids, dtype=np.int64)),
           "moments": _fingerprint(np.asarray(eval_set.moments).astype("datetime64[ns]").astype(np.int64)),
           "allowed": _fingerprint(np.packbits(allowed)), "texts": _fingerprint("\n".join(map(str, catalogue.texts))),
           "max_candidate_tokens": max_candidate_tokens}

    def build() -> dict:
        cand = {}
        for item in np.flatnonzero(allowed.any(axis=0)):
            cand[int(item)] = tok.encode(ser.candidate_text(catalogue.text(int(item))))[:max_candidate_tokens]
        descriptions = dict(zip(catalogue.codes[1:], catalogue.texts[1:]))
        prefixes = history_prefixes(lines, list(customer_ids), list(eval_set.moments), tok,
                                    model.config.context_length, max_candidate_tokens, descriptions)
        out = np.full(allowed.shape, -np.inf, dtype=np.float32)
        for row in tqdm(range(len(eval_set)), desc="GPT scoring", disable=not progress, unit="customer"):
            items = np.flatnonzero(allowed[row])
            if len(items):
                logp = model.score_continuations(prefixes[row], [cand[int(i)] for i in items])
                out[row, items] = np.nanmean(logp, axis=1)
        return {"scores": out}

    if cache is None:
        cache = len(eval_set) > 1
    scores = cached_artifact("capstone-gpt-scores", key, build)["scores"] if cache else build()["scores"]
    return np.asarray(scores, dtype=np.float64)


def standardise_over(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each row's scores standardised over its ``mask`` entries (mean 0, sd 1), 0 elsewhere.

    ``scores``, ``mask``: (n, n_items + 1). Rows with fewer than two masked entries, or a constant
    score over them, are 0. Non-finite masked scores count as the row's lowest finite one.
    """
    s = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) & ~np.isnan(s)
    out = np.zeros(s.shape)
    for row in range(s.shape[0]):
        m = mask[row]
        if m.sum() < 2:
            continue
        v = s[row, m]
        finite = np.isfinite(v)
        if not finite.any():
            continue
        v = np.where(finite, v, v[finite].min())
        sd = v.std()
        if sd > 0:
            out[row, m] = (v - v.mean()) / sd
    return out


def new_product_scorers(pretrained: "Pretrained", catalogue: "Catalogue", lines: "pd.DataFrame",
                        customer_ids: np.ndarray, embeddings: np.ndarray) -> dict:
    """The capstone's candidate scorers of new products: name -> ``fn(eval_set) -> (n, n_items + 1)``.

    ``"GPT"`` (:func:`gpt_scores` of the new products on sale), ``"MiniLM profile"`` (last 20
    products) and ``"MiniLM closest"`` (last 30; :func:`minilm_scores`) from text, and ``"recent
    sales"``, ``log(1 + purchase lines so far)`` (:meth:`~m6rec_lib.new_products.Catalogue.sales_before`),
    which needs no text. ``customer_ids``: the split's ``users.customer_ids`` (row -> customer).
    """
    new_items = np.flatnonzero(catalogue.is_new)

    def gpt(es: EvalSet) -> np.ndarray:
        allowed = catalogue.on_sale(es) & catalogue.is_new[None, :]
        return gpt_scores(pretrained, catalogue, lines, customer_ids[np.asarray(es.users)], es, allowed, progress=False)

    return {
        "GPT": gpt,
        "MiniLM profile": lambda es: minilm_scores(embeddings, es, new_items, "profile", 20),
        "MiniLM closest": lambda es: minilm_scores(embeddings, es, new_items, "closest", 30),
        "recent sales": lambda es: np.log1p(catalogue.sales_before(es)),
    }
