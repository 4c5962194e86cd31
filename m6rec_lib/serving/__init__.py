"""Serving a pretrained GPT scorer cheaply: the mechanisms of M6-Rec's deployment (Cui et al. 2022).

The model scores (customer history, candidate product) pairs: the final hidden state at the
candidate's last token goes through a small head to one logit ("will this candidate be bought?").
One module per mechanism; everything is importable from here (``from m6rec_lib import serving as sv``):

=====================  ==========================================================================
module                 what it holds
=====================  ==========================================================================
``latency``            timing honestly (warm-up, every request, p50/p95), interleaved comparisons,
                       paired per-request differences with an interval
``segments``           a request cut into segments (profile, time words, invoice lines, prompt,
                       candidate) and the cache of their lower-layer outputs
``scorer``             :class:`SegmentScorer`: the full model (``split=0``), multi-segment late
                       interaction (``split=L'``: lower layers per segment, cached; upper layers
                       per request), early exits; its training and a machine-free cost (:class:`Work`)
``early_exit``         exit heads on every layer and the weighted sum of their losses
``sharing``            one block at every depth (ALBERT, M6-Edge): 1/L of the block parameters
``pruning``            magnitude pruning to a sparsity, masks kept through fine-tuning, compact storage
``quantization``       int8 weights with one scale per row; int8 matrix products for serving
``distillation``       a small student trained on the labels and on the teacher's soft scores
``size``               parameters and bytes on disk
``traffic``            a realistic stream of requests replayed from real visits (for cache hit rates
                       and latency)
``report``             the latency-versus-quality table (M6-Rec's Table 6 shape) with paired
                       intervals against the full model, and its plot
=====================  ==========================================================================

Conventions: token IDs from :class:`m6rec_lib.text.tokenizer.BehaviourTokenizer` (``<pad>`` = 0,
``<bos>`` = 1); a history is written by :mod:`m6rec_lib.text.serializer`, whose segments tokenize
additively, so the segments' tokens concatenated are the history's tokens.
"""

from .distillation import distillation_loss, make_student
from .early_exit import ExitHead, early_exit_loss, early_exit_weights
from .latency import Latency, compare_latency, latency_difference, measure_latency
from .pruning import apply_masks, load_pruned, magnitude_masks, save_pruned, sparsity
from .quantization import Int8Embedding, dequantize_rows, quantize_int8, quantize_rows
from .report import Variant, plot_latency_quality, readable_table, variant_table
from .scorer import SegmentScorer, Work, predict, train_scorer
from .segments import ROLES, RequestBatch, Segment, SegmentCache, SegmentedPairs, segment_pairs, segments_from_tokens
from .sharing import share_layers
from .traffic import catalogue_tokens, replay_traffic
from .size import count_parameters, size_on_disk

__all__ = [
    "Latency", "measure_latency", "compare_latency", "latency_difference", "ROLES", "Segment",
    "segments_from_tokens", "SegmentCache", "SegmentedPairs", "segment_pairs", "RequestBatch", "ExitHead",
    "SegmentScorer", "Work", "train_scorer", "predict", "early_exit_weights", "early_exit_loss",
    "share_layers", "magnitude_masks", "apply_masks", "sparsity", "save_pruned", "load_pruned",
    "quantize_rows", "dequantize_rows", "Int8Embedding", "quantize_int8", "distillation_loss",
    "make_student", "size_on_disk", "count_parameters", "Variant", "variant_table", "readable_table", "plot_latency_quality",
    "catalogue_tokens", "replay_traffic",
]
