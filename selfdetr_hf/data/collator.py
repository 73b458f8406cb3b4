"""Batching windows for `SelfDetrForActionDetection`, with `Trainer` or a `DataLoader`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class SelfDetrDataCollator:
    """
    Data collator of Self-DETR windows, for `Trainer(data_collator=SelfDetrDataCollator())` or a
    `DataLoader(collate_fn=...)`. Transformers' default collator cannot batch these rows (their
    ground truth has a different number of segments per window, and the model takes labels as a
    list of dicts), so it must be passed explicitly.

    Takes rows with `input_features` `(T_i, C)`, optionally `attention_mask` `(T_i,)` (default all
    valid), `class_labels` `(n_i,)` and `segments` `(n_i, 2)`; any other key (video ids, window
    offsets) is left out, so that `model(**batch)` receives only what it takes.

    Returns:
        `dict`: with
        - **input_features** (`torch.FloatTensor` of shape `(batch_size, T, C)`) -- the windows,
          zero-padded to the longest.
        - **attention_mask** (`torch.LongTensor` of shape `(batch_size, T)`) -- 1 on valid steps.
        - **labels** (`list[dict]`, only when every row has ground truth) -- per window,
          `class_labels` (`torch.LongTensor` of shape `(n_i,)`) and `segments`
          (`torch.FloatTensor` of shape `(n_i, 2)`, normalised (center, width)).

    Example:

    ```python
    >>> import numpy as np
    >>> from selfdetr_hf.data import SelfDetrDataCollator

    >>> rows = [
    ...     {"input_features": np.ones((5, 8)), "class_labels": [1, 0], "segments": [[0.3, 0.1], [0.7, 0.2]]},
    ...     {"input_features": np.ones((3, 8)), "class_labels": [2], "segments": [[0.5, 0.4]], "video_id": "b"},
    ... ]
    >>> batch = SelfDetrDataCollator()(rows)
    >>> batch["input_features"].shape, batch["attention_mask"].tolist()
    (torch.Size([2, 5, 8]), [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> [label["segments"].shape for label in batch["labels"]]
    [torch.Size([2, 2]), torch.Size([1, 2])]
    ```
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
