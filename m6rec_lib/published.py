"""Published reference numbers the course quotes, each with its source and protocol.

A number in a notebook's text is either computed by that notebook (and recorded) or one of these.
Keeping them here, once, means a notebook can compare against them in code (``PUBLISHED["vqrec"]
.metrics["Recall@10"]``), the book's pages quote the same values, and the tests can tell a
published number in the prose from a typed-in result.

Numbers measured on other data or under another protocol are context, not a bar: each entry says
which data and protocol it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Published:
    """One published result: metric -> value, with where it comes from and how it was measured."""

    source: str
    data: str
    protocol: str
    metrics: Mapping[str, float] = field(default_factory=dict)


PUBLISHED: dict[str, Published] = {
    # ---------------------------------------------------------------- Online Retail
    "vqrec_online_retail": Published(
        "Hou et al., VQ-Rec, WWW 2023",
        "UCI Online Retail (2010-2011 sheet), UniSRec preprocessing",
        "each invoice a sequence, 5-core, leave-one-out, full ranking",
        {"Recall@10": 0.1557, "NDCG@10": 0.0730, "Recall@50": 0.3994, "NDCG@50": 0.1263},
    ),
    # ---------------------------------------------------------------- M6-Rec (Cui et al. 2022)
    "m6rec_ctr_alipayquery": Published(
        "Cui et al., M6-Rec, arXiv 2205.08084, 2022", "AlipayQuery impression logs", "CTR, AUC",
        {"DIN AUC": 0.7332, "M6-Rec AUC": 0.7508},
    ),
    "m6rec_ctr_taoproduct": Published(
        "Cui et al., M6-Rec, arXiv 2205.08084, 2022", "TaoProduct impression logs", "CTR, AUC",
        {"DIN AUC": 0.7611, "M6-Rec AUC": 0.7995},
    ),
    "m6rec_retrieval_alipayminiapp": Published(
        "Cui et al., M6-Rec, arXiv 2205.08084, 2022", "AlipayMiniApp", "retrieval HR@100",
        {"YouTubeDNN HR@100": 0.544, "TwinBERT HR@100": 0.696, "M6-Rec HR@100": 0.741,
         "TwinBERT HR@100 unseen items": 0.496, "M6-Rec HR@100 unseen items": 0.570},
    ),
    "m6rec_late_interaction_taoproduct": Published(
        "Cui et al., M6-Rec, arXiv 2205.08084, 2022 (Table 6)", "TaoProduct", "CTR AUC and latency",
        {"full 24 layers AUC": 0.7995, "full 24 layers ms": 57, "distilled 3 layers AUC": 0.7566,
         "distilled 3 layers ms": 16, "late interaction last 3 layers AUC": 0.7731,
         "late interaction last 3 layers ms": 16, "late interaction last layer AUC": 0.7299,
         "late interaction last layer ms": 10},
    ),
    "m6edge_tuning_clue": Published(
        "Cui et al., M6-Rec, arXiv 2205.08084, 2022", "CLUE (Chinese language understanding, not "
        "recommendation), M6-Edge", "accuracy on TNEWS / IFLYTEK / CSL",
        {"fine-tuning TNEWS": 0.544, "fine-tuning IFLYTEK": 0.575, "fine-tuning CSL": 0.829,
         "prompt tuning TNEWS": 0.534, "prompt tuning IFLYTEK": 0.531, "prompt tuning CSL": 0.760,
         "option tuning TNEWS": 0.544, "option tuning IFLYTEK": 0.565, "option tuning CSL": 0.813,
         "option + adapter TNEWS": 0.552, "option + adapter IFLYTEK": 0.586, "option + adapter CSL": 0.831},
    ),
    # ---------------------------------------------------------------- MovieLens-1M, full ranking
    "ml1m_sasrec_bce": Published(
        "Klenitskiy & Vasilev, RecSys 2023", "MovieLens-1M", "leave-one-out, full ranking; BCE, 1 negative",
        {"HR@10": 0.2500, "NDCG@10": 0.1341},
    ),
    "ml1m_sasrec_ce": Published(
        "Klenitskiy & Vasilev, RecSys 2023", "MovieLens-1M", "leave-one-out, full ranking; full cross-entropy",
        {"HR@10": 0.3152, "NDCG@10": 0.1821},
    ),
    "ml1m_sasrec_ce_3000_negatives": Published(
        "Klenitskiy & Vasilev, RecSys 2023", "MovieLens-1M",
        "leave-one-out, full ranking; cross-entropy over 3000 sampled negatives",
        {"HR@10": 0.3159, "NDCG@10": 0.1857},
    ),
    "ml1m_gsasrec": Published(
        "Petrov & Macdonald, RecSys 2023", "MovieLens-1M", "leave-one-out, full ranking; gBCE, 256 negatives",
        {"HR@10": 0.3003, "NDCG@10": 0.1726},
    ),
    "ml1m_hstu": Published(
        "Zhai et al., ICML 2024", "MovieLens-1M", "leave-one-out, full ranking",
        {"HR@10": 0.3097, "NDCG@10": 0.1720},
    ),
    "ml1m_bert4rec_sampled_vs_full": Published(
        "Petrov & Macdonald, RecSys 2022", "MovieLens-1M", "BERT4Rec; 100 uniform / 100 popularity "
        "sampled negatives vs full ranking",
        {"HR@10 100 uniform negatives": 0.8039, "HR@10 100 popularity negatives": 0.6975,
         "HR@10 full ranking": 0.2821},
    ),
    # ---------------------------------------------------------------- generative retrieval
    "tiger_beauty": Published(
        "Rajput et al., TIGER, NeurIPS 2023", "Amazon Beauty",
        "leave-one-out; semantic IDs (3 levels x 256 codes + a collision digit), trie-constrained beam",
        {"Recall@10": 0.0648, "NDCG@10": 0.0384},
    ),
}
"""Every published number the course quotes, by a short name."""


def published_values() -> set[float]:
    """Every value of :data:`PUBLISHED` (used by the tests to recognise a quoted published number)."""
    return {float(v) for entry in PUBLISHED.values() for v in entry.metrics.values()}
