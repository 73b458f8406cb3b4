"""Batching windows for `SelfDetrForActionDetection`, with `Trainer` or a `DataLoader`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class SelfDetrDataCollator:
    """Pad window features to the longest in the batch and gather the ground truth.

    Takes rows with ``input_features`` ``(T_i, C)``, optionally ``attention_mask`` ``(T_i,)``
    (default all valid), ``class_labels`` ``(n_i,)`` and ``segments`` ``(n_i, 2)``; any other
    key (video ids, window offsets) is left out, so that ``model(**batch)`` receives only
    what it takes.

    Returns:
        ``input_features`` ``(B, T, C)`` float32 (zero-padded), ``attention_mask`` ``(B, T)``
        int64 (1 = valid step), and, when the rows have ground truth, ``labels``: a list of B
        dicts of tensors, ``class_labels`` int64 ``(n_i,)`` and ``segments`` float32 ``(n_i, 2)``.
    """

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        features = [torch.as_tensor(np.asarray(row["input_features"], dtype=np.float32)) for row in rows]
        length = max(len(window) for window in features)
        input_features = features[0].new_zeros((len(rows), length, features[0].shape[-1]))
        attention_mask = torch.zeros((len(rows), length), dtype=torch.int64)
        for index, (row, window) in enumerate(zip(rows, features)):
            input_features[index, : len(window)] = window
            mask = row.get("attention_mask")
            attention_mask[index, : len(window)] = 1 if mask is None else torch.as_tensor(np.asarray(mask))
        batch: dict[str, Any] = {"input_features": input_features, "attention_mask": attention_mask}
        if all("class_labels" in row and "segments" in row for row in rows):
            batch["labels"] = [
                {
                    "class_labels": torch.as_tensor(np.asarray(row["class_labels"], dtype=np.int64)).reshape(-1),
                    "segments": torch.as_tensor(np.asarray(row["segments"], dtype=np.float32)).reshape(-1, 2),
                }
                for row in rows
            ]
        return batch


__all__ = ["SelfDetrDataCollator"]
