"""Loss and accuracy of a model on a tokenized dataset, in a plain loop (no Trainer state involved).

Used for the report along a transferred trajectory and by the benchmark. Example::

    metrics = evaluate(model, data, DataCollatorWithPadding(tokenizer))   # {"loss": ..., "accuracy": ...}
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def evaluate(
    model: nn.Module, data, collate: Callable, batch_size: int = 128, classify: bool = True
) -> dict[str, float]:
    """Mean loss over examples and, for classifiers (``labels`` or ``label`` column), accuracy."""
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, len(data), batch_size):
        rows = data[start : start + batch_size]
        if "label" in rows:
            rows["labels"] = rows.pop("label")
        examples = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
        batch = {k: v.to(device) for k, v in collate(examples).items()}
        outputs = model(**batch)
        n = len(examples)
        total_loss += float(outputs.loss) * n
        if classify:
            correct += int((outputs.logits.argmax(-1) == batch["labels"]).sum())
        count += n
    metrics = {"loss": total_loss / max(count, 1)}
    if classify:
        metrics["accuracy"] = correct / max(count, 1)
    return metrics
