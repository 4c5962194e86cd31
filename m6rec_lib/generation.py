"""Generating text with the pretrained GPT: decoding strategies, catalogue-constrained decoding, and
the metrics that compare generated text with a reference.

Decoding (all use the GPT's key/value cache, so the prompt is computed once):

- :func:`greedy_decode` -- take the most likely token at every step;
- :func:`sample_decode` -- draw from ``softmax(logits / temperature)`` (optionally the top-k only),
  several samples in parallel;
- :func:`beam_search` -- keep the ``beam_size`` most likely partial texts, return the best finished
  ones; with a :class:`CatalogueTrie` it becomes **generative retrieval**: at every step only the
  tokens that continue some catalogue description are allowed, so every finished text *is* a product.

A generation ends with a stop token; for product descriptions in the course's text format
(``... Now buys JUMBO BAG RED x10; ...``) the description ends where the quantity (`` x``), a
separator or an end of text begins. The trie encodes the same end: each description's tokens are
followed by an ``end_id`` token (the `` x`` that starts a quantity), so ``P(end | description)`` says
"the description is complete here" and one description that is a prefix of another is not cut short.

Metrics, each written out to be read and checked against brute force or known values in the tests:

- :func:`corpus_bleu` (Papineni et al. 2002): clipped n-gram precisions, geometric mean, brevity
  penalty with the closest reference length; optional smoothing (Chen & Cherry 2014, method 1);
- :func:`rouge_l` (Lin 2004): longest common subsequence F1, best over the references;
- :func:`distinct_n` (Li et al. 2016): distinct n-grams / all n-grams over all generations.

:func:`text_metrics_table` measures several decoding strategies at once (per customer and over the
corpus), :func:`corpus_paired_halves` compares a corpus-level metric of two strategies with an
interval, and :func:`constrained_retrieval_scores` turns constrained beams into a score matrix.
:func:`basket_matrix` and :func:`co_purchases` count the co-purchase evidence an explanation sketch
can point to.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .models.gpt import GPT, LayerCache

if TYPE_CHECKING:
    import scipy.sparse as sp

    from .metrics import PairedDifference

__all__ = [
    "CatalogueTrie", "Hypothesis", "greedy_decode", "sample_decode", "beam_search",
    "ngrams", "modified_precision", "corpus_bleu", "lcs_length", "rouge_l", "distinct_n",
    "per_customer_text_metrics", "corpus_text_metrics", "text_metrics_table", "corpus_paired_halves",
    "constrained_retrieval_scores", "basket_matrix", "co_purchases",
]


# =============================================================================================
# the catalogue as a prefix tree
# =============================================================================================

@dataclass
class _Node:
    children: dict[int, "_Node"] = field(default_factory=dict)
    items: list[int] = field(default_factory=list)  # set on the node reached by the end token


class CatalogueTrie:
    """A prefix tree over the token sequences of the catalogue's descriptions.

    ``sequences``: per item, its description's token IDs (e.g. of ``candidate_text(description)``);
    ``item_ids``: the item of each sequence; ``end_id``: the token appended to every sequence to
    mark its end. Items with identical descriptions share a leaf (``leaf.items`` lists them).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], item_ids: Sequence[int], end_id: int):
        if len(sequences) != len(item_ids):
            raise ValueError(f"{len(sequences)} sequences but {len(item_ids)} item IDs")
        self.root = _Node()
        self.end_id = int(end_id)
        self.n_sequences = 0
        self.n_nodes = 1
        for seq, item in zip(sequences, item_ids):
            self.add(seq, item)

    def add(self, sequence: Sequence[int], item: int) -> int:
        """Insert one more item's token sequence; return how many new nodes that took.

        This is all it takes to make a new product *reachable* by constrained decoding. Whether the
        model ever *walks* the new path is another matter: that depends on the probability it
        learned for such text.
        """
        seq = [int(t) for t in sequence]
        if not seq:
            raise ValueError(f"item {item} has an empty token sequence")
        if self.end_id in seq:
            raise ValueError(f"item {item}'s tokens contain the end token {self.end_id}; pick another end_id")
        node, created = self.root, 0
        for t in seq + [self.end_id]:
            if t not in node.children:
                node.children[t] = _Node()
                created += 1
            node = node.children[t]
        node.items.append(int(item))
        self.n_sequences += 1
        self.n_nodes += created
        return created

    def node(self, prefix: Iterable[int]) -> _Node | None:
        """The node reached by ``prefix`` (token IDs), or None if no description starts so."""
        node = self.root
        for t in prefix:
            node = node.children.get(int(t))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Iterable[int]) -> list[int]:
        """Token IDs that may follow ``prefix`` (the end token when a description is complete)."""
        node = self.node(prefix)
        return [] if node is None else list(node.children)

    def items_of(self, tokens: Iterable[int]) -> list[int]:
        """The items whose description is exactly ``tokens`` (without the end token)."""
        node = self.node(list(tokens) + [self.end_id])
        return [] if node is None else list(node.items)

    def __len__(self) -> int:
        return self.n_sequences


# =============================================================================================
# decoding
# =============================================================================================

@dataclass
class Hypothesis:
    """A generated continuation: its token IDs (stop/end token excluded), total log-probability
    (stop/end token included), whether it ended with a stop token, and the catalogue items it
    names (constrained decoding only)."""

    tokens: list[int]
    logprob: float
    finished: bool
    items: list[int] = field(default_factory=list)

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(1, len(self.tokens) + int(self.finished))


def _check_room(model: GPT, prefix: Sequence[int], max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    room = model.config.context_length - len(prefix)
    if max_new_tokens > room:
        raise ValueError(
            f"a prefix of {len(prefix)} tokens leaves room for {room} new tokens in the context of "
            f"{model.config.context_length}, not {max_new_tokens}; shorten the history"
        )


def _step(model: GPT, tokens: torch.Tensor, caches: list[LayerCache]) -> torch.Tensor:
    """Feed one new token per row: (B,) -> (B, vocab) log-probabilities of the next token."""
    logits = model(tokens[:, None], caches=caches)[:, -1].float()
    return torch.log_softmax(logits, dim=-1)


@torch.no_grad()
def greedy_decode(model: GPT, prefix: Sequence[int], max_new_tokens: int,
                  stop_ids: Iterable[int] = ()) -> Hypothesis:
    """The most likely token at every step, until a stop token or ``max_new_tokens``."""
    hyps = beam_search(model, prefix, beam_size=1, max_new_tokens=max_new_tokens, stop_ids=stop_ids)
    return hyps[0]


@torch.no_grad()
def sample_decode(
    model: GPT,
    prefix: Sequence[int],
    n_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    stop_ids: Iterable[int] = (),
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """``n_samples`` continuations drawn in parallel from ``softmax(logits / temperature)``.

    ``top_k`` keeps only the k most likely tokens at each step. A row stops at its first stop
    token. ``logprob`` is the log-probability under the model itself (temperature 1), so samples at
    different temperatures can be compared.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling (use greedy_decode for 0), got {temperature}")
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    _check_room(model, prefix, max_new_tokens)
    was = model.training
    model.eval()
    stops = set(int(s) for s in stop_ids)
    caches, logp = model.prefix_caches(prefix)
    caches = [c.expand(n_samples) for c in caches]
    logp = logp[None].expand(n_samples, -1)
    out = [[] for _ in range(n_samples)]
    total = torch.zeros(n_samples, dtype=torch.float64)
    done = torch.zeros(n_samples, dtype=torch.bool)
    finished = [False] * n_samples
    for step in range(max_new_tokens):
        logits = logp / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
        for r in range(n_samples):
            if done[r]:
                continue
            t = int(nxt[r])
            total[r] += float(logp[r, t])
            if t in stops:
                done[r] = True
                finished[r] = True
            else:
                out[r].append(t)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        logp = _step(model, nxt, caches)
    model.train(was)
    return [Hypothesis(out[r], float(total[r]), finished[r]) for r in range(n_samples)]


@torch.no_grad()
def beam_search(
    model: GPT,
    prefix: Sequence[int],
    beam_size: int,
    max_new_tokens: int,
    stop_ids: Iterable[int] = (),
    trie: CatalogueTrie | None = None,
    n_best: int | None = None,
) -> list[Hypothesis]:
    """The ``n_best`` (default ``beam_size``) most likely continuations found by beam search.

    At every step each live hypothesis is extended by its best tokens; the ``beam_size`` best
    extensions stay alive, and an extension by a stop token (or, with a ``trie``, by its end
    token) is finished. Search stops when no live hypothesis can still beat the ``n_best``-th finished one
    (log-probabilities only decrease as text gets longer) or after ``max_new_tokens``; unfinished
    hypotheses are returned last, marked ``finished=False``. Sorted by ``logprob``, best first.

    With ``trie`` only catalogue continuations are allowed (generative retrieval) and every
    finished hypothesis names its ``items``. Scores are the model's own log-probabilities (not
    renormalised over the allowed tokens), so they rank items by ``log P(description + end | prefix)``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    n_best = n_best or beam_size
    _check_room(model, prefix, max_new_tokens)
    was = model.training
    model.eval()
    stops = set(int(s) for s in stop_ids)
    caches, logp0 = model.prefix_caches(prefix)
    # a live hypothesis: (tokens, log-probability, trie node, row of its parent in the caches)
    live: list[tuple[list[int], float, object, int]] = [([], 0.0, trie.root if trie else None, 0)]
    logp = logp0[None]                                                 # (n_live, V)
    finished: list[Hypothesis] = []
    for step in range(max_new_tokens):
        candidates: list[tuple[float, int, int]] = []                  # (score, live row, token)
        for b, (tokens, score, node, _) in enumerate(live):
            row = logp[b]
            if trie is not None:
                allowed = torch.tensor(list(node.children), dtype=torch.long)
                top = torch.topk(row[allowed], min(beam_size, len(allowed)))
                picks = zip(top.values.tolist(), allowed[top.indices].tolist())
            else:
                top = torch.topk(row, min(beam_size, row.shape[0]))
                picks = zip(top.values.tolist(), top.indices.tolist())
            candidates.extend((score + v, b, t) for v, t in picks)
        candidates.sort(key=lambda c: -c[0])
        new_live: list[tuple[list[int], float, object, int]] = []
        for score, b, t in candidates:
            tokens, _, node, _ = live[b]
            if trie is not None and t == trie.end_id:
                finished.append(Hypothesis(list(tokens), score, True, list(node.children[t].items)))
            elif trie is None and t in stops:
                finished.append(Hypothesis(list(tokens), score, True))
            elif len(new_live) < beam_size:
                new_live.append((tokens + [t], score, node.children[t] if trie is not None else None, b))
        # a live text can only lose probability: drop those that cannot reach the n_best finished
        threshold = _nth_best(finished, n_best)
        live = [h for h in new_live if h[1] > threshold]
        if not live or step == max_new_tokens - 1:
            break
        index = torch.tensor([h[3] for h in live], dtype=torch.long)
        caches = [LayerCache(c.k.index_select(0, index), c.v.index_select(0, index)) for c in caches]
        logp = _step(model, torch.tensor([h[0][-1] for h in live], dtype=torch.long), caches)
    model.train(was)
    out = sorted(finished, key=lambda h: -h.logprob)[:n_best]
    unfinished = sorted((Hypothesis(tokens, score, False) for tokens, score, _, _ in live), key=lambda h: -h.logprob)
    return out + unfinished[: n_best - len(out)]


def _nth_best(finished: list[Hypothesis], n: int) -> float:
    """The n-th best finished score so far (``-inf`` while fewer than n are finished)."""
    if len(finished) < n:
        return float("-inf")
    return sorted((h.logprob for h in finished), reverse=True)[n - 1]


# =============================================================================================
# metrics
# =============================================================================================

def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples) of a token list."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(hypothesis: Sequence[str], references: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    """BLEU's clipped n-gram matches and the hypothesis's n-gram count: (matches, total).

    Each hypothesis n-gram counts at most as often as it occurs in the reference where it occurs
    most ("the the the" against "the cat" matches once).
    """
    hyp = ngrams(hypothesis, n)
    max_ref: Counter = Counter()
    for ref in references:
        for g, c in ngrams(ref, n).items():
            max_ref[g] = max(max_ref[g], c)
    matches = sum(min(c, max_ref[g]) for g, c in hyp.items())
    return matches, sum(hyp.values())


def _closest_ref_length(hyp_len: int, references: Sequence[Sequence[str]]) -> int:
    return min((abs(len(r) - hyp_len), len(r)) for r in references)[1]


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_n: int = 4,
    smoothing: bool = False,
) -> float:
    """Corpus BLEU-``max_n``: ``BP * exp(mean_n log p_n)`` (Papineni et al. 2002).

    ``hypotheses``: token lists; ``references``: per hypothesis, a list of reference token lists.
    ``p_n`` = clipped n-gram matches / hypothesis n-grams, summed over the corpus before dividing.
    ``BP = 1`` if the hypotheses' total length c exceeds r (the sum of the closest reference
    lengths), else ``exp(1 - r / c)``. Without ``smoothing`` any ``p_n = 0`` gives BLEU 0; with it, a
    zero count is replaced by 0.1 (Chen & Cherry 2014, method 1).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if max_n < 1:
        raise ValueError("max_n must be >= 1")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    matches = np.zeros(max_n)
    totals = np.zeros(max_n)
    c = r = 0
    for hyp, refs in zip(hypotheses, references):
        c += len(hyp)
        r += _closest_ref_length(len(hyp), refs)
        for n in range(1, max_n + 1):
            m, t = modified_precision(hyp, refs, n)
            matches[n - 1] += m
            totals[n - 1] += t
    if c == 0:
        return 0.0
    if smoothing:
        matches = np.where(matches == 0, 0.1, matches)
    if (matches == 0).any() or (totals == 0).any():
        return 0.0
    log_p = np.log(matches / totals).mean()
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return float(bp * math.exp(log_p))


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) len(b)))."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """ROUGE-L of one hypothesis: the best F1 over the references, with its precision and recall.

    ``P = LCS / len(hyp)``, ``R = LCS / len(ref)``, ``F1 = 2 P R / (P + R)`` (0 when LCS = 0).
    """
    best = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for ref in references:
        lcs = lcs_length(hypothesis, ref)
        if lcs == 0:
            continue
        p, r = lcs / len(hypothesis), lcs / len(ref)
        f = 2 * p * r / (p + r)
        if f > best["f1"]:
            best = {"precision": p, "recall": r, "f1": f}
    return best


def distinct_n(hypotheses: Sequence[Sequence[str]], n: int) -> float:
    """Distinct-n: the number of distinct n-grams over all hypotheses / the number of n-grams."""
    counts: Counter = Counter()
    for h in hypotheses:
        counts.update(ngrams(h, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


# =============================================================================================
# measuring a set of generations, per customer and over the corpus
# =============================================================================================

def _words(text: str) -> list[str]:
    return " ".join(str(text).split()).split()


def per_customer_text_metrics(
    texts: Sequence[str],
    references: Sequence[Sequence[str]],
    catalogue: set[str] | Mapping[str, Any],
    histories: Sequence[set[str]] | None = None,
) -> pd.DataFrame:
    """One row per customer: how their generated text relates to their basket and the catalogue.

    ``texts``: one generation per customer; ``references``: per customer, the descriptions of the
    products in their true basket; ``catalogue``: every existing description (whitespace
    normalised); ``histories``: per customer, the descriptions they bought before. Columns:
    ``words``, ``ROUGE-L F1`` (best over the basket), ``existing product`` (1 if the text is a
    catalogue description), ``in the basket`` (1 if it is one of the basket's), ``bought before``.
    """
    if len(texts) != len(references):
        raise ValueError(f"{len(texts)} texts but {len(references)} reference lists")
    rows = []
    for r, (text, refs) in enumerate(zip(texts, references)):
        norm = " ".join(_words(text))
        ref_words = [_words(x) for x in refs]
        row = {"words": len(_words(text)),
               "ROUGE-L F1": rouge_l(_words(text), ref_words)["f1"] if ref_words else 0.0,
               "existing product": float(norm in catalogue),
               "in the basket": float(norm in {" ".join(w) for w in ref_words})}
        if histories is not None:
            row["bought before"] = float(norm in histories[r])
        rows.append(row)
    return pd.DataFrame(rows)


def corpus_text_metrics(texts: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1/2/4 (BLEU-4 smoothed) against each customer's basket, and distinct-1/2 of the texts."""
    hyps = [_words(t) for t in texts]
    refs = [[_words(x) for x in rs] for rs in references]
    return {"BLEU-1": corpus_bleu(hyps, refs, max_n=1), "BLEU-2": corpus_bleu(hyps, refs, max_n=2),
            "BLEU-4": corpus_bleu(hyps, refs, max_n=4, smoothing=True),
            "distinct-1": distinct_n(hyps, 1), "distinct-2": distinct_n(hyps, 2)}


def text_metrics_table(generations: Mapping[str, Sequence[str]], references: Sequence[Sequence[str]],
                       catalogue: set[str] | Mapping[str, Any],
                       histories: Sequence[set[str]] | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One row per decoding strategy: corpus metrics and the means of the per-customer ones.

    Returns ``(table, per_customer)``, ``per_customer[name]`` being
    :func:`per_customer_text_metrics` of that strategy (for paired intervals over customers).
    """
    rows, per_customer = {}, {}
    for name, texts in generations.items():
        refs = references[:len(texts)]
        pc = per_customer_text_metrics(texts, refs, catalogue, None if histories is None else histories[:len(texts)])
        per_customer[name] = pc
        corpus = corpus_text_metrics(texts, refs)
        rows[name] = {**{k: corpus[k] for k in ("BLEU-1", "BLEU-2", "BLEU-4")}, "ROUGE-L F1": pc["ROUGE-L F1"].mean(),
                      "words (mean)": pc["words"].mean(), "distinct-1": corpus["distinct-1"],
                      "distinct-2": corpus["distinct-2"], **{c: pc[c].mean() for c in pc.columns[2:]}}
    return pd.DataFrame(rows).T, per_customer


def corpus_paired_halves(metric: Callable[[Sequence[Sequence[str]]], float], a: Sequence[str], b: Sequence[str],
                         *, names: tuple[str, str], metric_name: str, n_halves: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> "PairedDifference":
    """A corpus-level metric (such as distinct-2) of two sets of generations for the same customers,
    compared on random halves of the customers.

    ``a``, ``b``: one text per customer, aligned. A bootstrap draws customers *with* replacement,
    and a customer drawn twice repeats their text, which a diversity metric counts as repetition:
    the interval would be biased. So each resample is a random half of the customers, drawn
    *without* replacement (the same half for A and B), and ``metric`` is computed on that half for
    both. For a mean, the spread of half-sample means equals the spread of the full-sample mean
    (the finite-population correction), so the interval has the usual width. Returns a
    :class:`~m6rec_lib.metrics.PairedDifference` (``view="texts"``) whose ``a``, ``b`` and ``diff``
    are means over the halves, so that a claim is asserted with ``require`` as for per-user metrics.
    """
    from .metrics import PairedDifference

    if len(a) != len(b) or len(a) < 4:
        raise ValueError(f"a and b need one text per customer, the same customers, at least 4 (got {len(a)}, {len(b)})")
    if n_halves < 10:
        raise ValueError(f"n_halves must be >= 10, got {n_halves}")
    wa, wb = [_words(t) for t in a], [_words(t) for t in b]
    rng = np.random.default_rng(seed)
    half = len(wa) // 2
    va, vb = np.empty(n_halves), np.empty(n_halves)
    for i in range(n_halves):
        idx = rng.choice(len(wa), size=half, replace=False)
        va[i] = metric([wa[j] for j in idx])
        vb[i] = metric([wb[j] for j in idx])
    diffs = va - vb
    tail = (1 - confidence) / 2 * 100
    return PairedDifference(str(names[0]), str(names[1]), metric_name, "texts", float(va.mean()), float(vb.mean()),
                            float(diffs.mean()), float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)),
                            len(wa), confidence, int(n_halves))


# =============================================================================================
# generative retrieval with the catalogue trie: the beam as a score matrix
# =============================================================================================

def constrained_retrieval_scores(
    model: GPT,
    prefixes: Sequence[Sequence[int]],
    trie: CatalogueTrie,
    n_items: int,
    beam_size: int,
    max_new_tokens: int,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """Constrained beam search for every prefix, as a score matrix for the evaluator.

    Returns ``(scores, off_catalogue)``: ``scores`` ``(len(prefixes), n_items + 1)`` holds, for each
    finished beam, ``log P(description + end | prefix)`` at each of its items and ``-inf``
    elsewhere; ``off_catalogue`` counts beams that did not finish on a catalogue leaf (0 when the
    trie does its job).
    """
    from tqdm.auto import tqdm

    scores = np.full((len(prefixes), n_items + 1), -np.inf)
    off = 0
    for r in tqdm(range(len(prefixes)), desc="generative retrieval", disable=not progress):
        for h in beam_search(model, list(prefixes[r]), beam_size=beam_size, max_new_tokens=max_new_tokens,
                             trie=trie, n_best=beam_size):
            if not (h.finished and h.items and trie.items_of(h.tokens) == h.items):
                off += 1
                continue
            scores[r, h.items] = h.logprob
    return scores, off


# =============================================================================================
# evidence for explanation sketches
# =============================================================================================

def basket_matrix(invoices: Sequence, items: Sequence[int], n_items: int) -> "sp.csc_matrix":
    """``(n_invoices, n_items + 1)`` 0/1 matrix: 1 where an invoice holds an item (column-major,
    so that one item's column is cheap to read)."""
    import scipy.sparse as sp

    rows = pd.factorize(pd.Series(invoices))[0]
    cols = np.asarray(items, dtype=np.int64)
    if len(rows) != len(cols):
        raise ValueError(f"{len(rows)} invoices but {len(cols)} items; pass the two columns of the same lines")
    m = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(int(rows.max()) + 1 if len(rows) else 0, n_items + 1))
    m.data[:] = 1.0                                              # several lines of one item count once
    return m


def co_purchases(baskets: "sp.csc_matrix", item: int, others: Sequence[int]) -> np.ndarray:
    """``(len(others),)``: how many invoices of ``baskets`` (:func:`basket_matrix`) hold both
    ``item`` and each of ``others``."""
    others = np.asarray(others, dtype=np.int64)
    if len(others) == 0:
        return np.zeros(0)
    return np.asarray((baskets[:, [int(item)]].T @ baskets[:, others]).todense()).ravel()
