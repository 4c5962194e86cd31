"""Data: the bundled Online Retail II file, cleaning, IDs, splits, sequences, and optional sets.

``from m6rec_lib.data import load_clean_lines, next_basket_split`` covers most lessons.
"""

from .evalset import EvalSet
from .indexing import PAD_ID, UNKNOWN_ID, ItemIndex, UserIndex
from .retail import (
    NON_PRODUCT_CODES,
    RETAIL_FILE,
    RETAIL_SHA256,
    CleaningReport,
    DataError,
    clean_transactions,
    is_non_product,
    item_descriptions,
    load_clean_lines,
    load_online_retail,
    validate_schema,
    verify_bundled_file,
)
from .sequences import pad_left, training_windows
from .subsample import subsample_lines
from .splits import (
    Split,
    first_baskets,
    future_leakage,
    interaction_matrix,
    invoice_sequence_split,
    leave_last_basket_split,
    next_basket_split,
    year_cut_split,
)

__all__ = [
    "EvalSet", "PAD_ID", "UNKNOWN_ID", "ItemIndex", "UserIndex", "NON_PRODUCT_CODES", "RETAIL_FILE", "RETAIL_SHA256", "verify_bundled_file",
    "CleaningReport", "DataError", "clean_transactions", "is_non_product", "item_descriptions",
    "load_clean_lines", "load_online_retail", "validate_schema", "pad_left", "training_windows", "subsample_lines",
    "Split", "first_baskets", "future_leakage", "interaction_matrix", "invoice_sequence_split",
    "leave_last_basket_split", "next_basket_split", "year_cut_split",
]
