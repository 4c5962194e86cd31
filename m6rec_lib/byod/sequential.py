"""The course's SASRec, trained on your split with the settings of :mod:`m6rec_lib.byod.settings`.

One detail of the course's training windows matters here. :func:`m6rec_lib.models.sasrec.train_sasrec`
cuts each history into windows that **end with the history's last item**, right-aligned, and that
last item has no next item to predict: the rightmost position (``max_len - 1``) never carries a
training target, so the state computed there, the one :meth:`SASRec.score_sequences` reads, is never
trained. Every other position is: in particular the one just left of it, where each history's
second-to-last item sat during training, predicting the last one.

:class:`AlignedSASRec` therefore scores the way the model was trained: it places a history's last
item at position ``max_len - 2`` (a padding item fills the rightmost position, which no earlier
position can see) and reads the state there. It reads the last ``max_len - 1`` items. Training
itself, the configuration and the cache key are the course's. On a source where the item before
the last decides the next one, this is the difference between a model that uses order and one that
does not (lesson 12 shows both).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from m6rec_lib.data import PAD_ID, Split, pad_left
from m6rec_lib.models.sasrec import SASRec, SASRecConfig, TrainConfig, basket_ids, split_fingerprint, train_sasrec

from .settings import SequentialSettings


class AlignedSASRec(SASRec):
    """:class:`~m6rec_lib.models.sasrec.SASRec` whose scores are read where training put the last item."""

    @torch.no_grad()
    def score_sequences(self, sequences: Sequence[np.ndarray], batch_size: int = 512) -> torch.Tensor:
        """``n`` item-ID sequences (oldest first) -> ``(n, n_items + 1)`` next-item logits.

        Each sequence's last ``max_len - 1`` items are right-aligned one position short of the end
        (``[..., x_{t-1}, x_t, PAD]``) and the state at ``x_t`` is scored. Causal attention means the
        padding item changes nothing to the left of it.
        """
        was_training = self.training
        self.eval()
        device = self.item_embedding.weight.device
        keep = self.config.max_len - 1
        shifted = [np.r_[np.asarray(s, dtype=np.int64)[-keep:], PAD_ID] for s in sequences]
        padded = torch.as_tensor(pad_left(shifted, self.config.max_len))
        out = [self.item_logits(self.encode(padded[s:s + batch_size].to(device))[:, -2]).cpu()
               for s in range(0, len(padded), batch_size)]
        self.train(was_training)
        if not out:
            return torch.empty(0, self.config.n_items + 1)
        return torch.cat(out)


def train_sequential(split: Split, settings: SequentialSettings, *, progress: bool = True,
                     rebuild: bool = False) -> tuple[AlignedSASRec, dict[str, Any]]:
    """The trained model for ``split`` and ``settings``, from the cache or trained now.

    Trained by the course's :func:`~m6rec_lib.models.sasrec.train_sasrec` (early stopping on the
    validation NDCG@10 in ``settings.view``, scored by :class:`AlignedSASRec`); cached in
    ``cache_dir()`` by both configurations and the split's fingerprint, like every model of the
    course. Returns ``(model in eval mode, meta)`` with ``meta["history"]`` (one dict per epoch).
    """
    from m6rec_lib.seeding import seed_everything
    from m6rec_lib.training import cached_model

    if settings.max_len < 2:
        raise ValueError("max_len must be at least 2: the last item is read one position short of the end")
    model_config = SASRecConfig(n_items=split.n_items, **settings.model_config())
    train_config = TrainConfig(**settings.train_config())
    key = {"model": asdict(model_config), "train": asdict(train_config), "split": split_fingerprint(split),
           "scoring": "aligned"}
    seed_everything(train_config.seed)
    model = AlignedSASRec(model_config)

    def train(m: AlignedSASRec) -> pd.DataFrame:
        return train_sasrec(m, split.train_sequences, split.validation, train_config, basket_ids(split),
                            progress=progress)

    model, meta = cached_model("byod_sasrec", key, model, train, rebuild=rebuild)
    model.eval()
    return model, meta
