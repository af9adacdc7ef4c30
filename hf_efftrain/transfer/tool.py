"""The end-to-end transfer behind ``hf-efftrain transfer``: folders in, loadable model folders and a report out.

Reads a source trajectory (``checkpoint-N``/``snapshot-N`` folders, e.g. written by ``SnapshotCallback``), a
target initialization (a ``from_pretrained`` folder that also gives the architecture and tokenizer), checks that
the two match tensor for tensor, draws the gradient batches from a dataset, runs the transfer and writes
``OUT/checkpoint-s/`` (config + weights + tokenizer; every point or only the end) plus
``OUT/transfer_report.json`` with loss/accuracy along the transferred trajectory. Example::

    report = run_transfer("runs/a/snapshots", "models/b-init", "runs/b-transferred", TransferConfig(steps=10))
    report["points"][-1]["accuracy"]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import transformers
from datasets import DatasetDict
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoTokenizer, DataCollatorWithPadding, PreTrainedModel

from hf_efftrain.errors import TransferMismatchError
from hf_efftrain.logging import progress_bar
from hf_efftrain.outputs import check_output, output_directory
from hf_efftrain.tasks import load_splits, tokenize_classification, tokenize_lm_blocks
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.transfer.config import TransferConfig
from hf_efftrain.transfer.engine import transfer_trajectory
from hf_efftrain.transfer.evaluation import evaluate
from hf_efftrain.transfer.gradients import LossGradients, step_batches
from hf_efftrain.transfer.hf_spec import permutation_spec
from hf_efftrain.transfer.schedule import source_path

REPORT_FILE = "transfer_report.json"


def load_target(folder: str | os.PathLike) -> PreTrainedModel:
    """The target model, built with the class its ``config.json`` names (sequence classifier, LM...)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise TransferMismatchError(f"{folder}: no config.json; TARGET_INIT must be a save_pretrained folder")
    config = AutoConfig.from_pretrained(folder)
    names = config.architectures or []
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None:
        raise TransferMismatchError(f"{folder}: config.json names no model class transformers knows ({names})")
    return cls.from_pretrained(folder).eval()


def check_compatible(trajectory: Trajectory, model: PreTrainedModel, source: str | os.PathLike) -> None:
    """Raise :class:`TransferMismatchError` unless every source tensor exists in the target with its shape."""
    first = trajectory.checkpoints[0].folder / "config.json"
    if first.is_file():
        source_type = json.loads(first.read_text()).get("model_type")
        if source_type != model.config.model_type:
            raise TransferMismatchError(
                f"source {source} is a {source_type!r} model but the target is {model.config.model_type!r}"
            )
    params = dict(model.named_parameters())
    for name in trajectory.names:
        if name not in params:
            raise TransferMismatchError(f"source tensor {name!r} does not exist in the target model")
        if tuple(params[name].shape) != trajectory.shapes[name]:
            raise TransferMismatchError(
                f"{name!r} has shape {trajectory.shapes[name]} in the source but {tuple(params[name].shape)} "
                "in the target; both must have the same architecture and sizes"
            )


def task_data(
    model: PreTrainedModel, tokenizer, dataset: str, seed: int, train_rows: int, eval_rows: int, max_length: int
):
    """(train, validation, collator) for the model's task; only the rows needed are tokenized."""
    splits = load_splits(dataset, seed=seed)
    eval_split = "validation" if "validation" in splits else "test"
    splits = DatasetDict(
        train=splits["train"].shuffle(seed=seed).select(range(min(train_rows, len(splits["train"])))),
        validation=splits[eval_split].select(range(min(eval_rows, len(splits[eval_split])))),
    )
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        data = tokenize_classification(splits, tokenizer, max_length)
        return data["train"], data["validation"], DataCollatorWithPadding(tokenizer)
    data = tokenize_lm_blocks(splits, tokenizer, max_length)
    collate = transformers.DataCollatorForLanguageModeling(tokenizer, mlm=name.endswith("ForMaskedLM"))
    return data["train"], data["validation"], collate


def gradient_batches(train, collate, config: TransferConfig) -> list[list[dict]]:
    """``steps`` groups of ``batches_per_step`` batches (MLM masks drawn once, from ``config.seed``)."""
    torch.manual_seed(config.seed)
    rows = train.rename_column("label", "labels") if "label" in train.column_names else train
    loader = DataLoader(rows, batch_size=config.batch_size, collate_fn=collate)
    return step_batches([dict(b) for b in loader], config.steps, config.batches_per_step)


def run_transfer(
    source: str | os.PathLike,
    target: str | os.PathLike,
    out: str | os.PathLike,
    config: TransferConfig,
    dataset: str = "rotten_tomatoes",
    max_length: int = 64,
    eval_samples: int = 500,
    save: str = "end",
    progress: bool = True,
    overwrite: bool = False,
    overwrite_flag: str = "--overwrite",
) -> dict:
    """Transfer ``source``'s trajectory onto ``target``; write folders and the report under ``out``.

    ``out`` is built beside its place and appears whole at the end; it may not be (or hold, or lie inside) the
    source or the target, and an earlier transfer there is replaced only with ``overwrite``.
    """
    out = check_output(out, "transfer", inputs=[source, target], overwrite=overwrite, flag=overwrite_flag)
    with output_directory(out, "transfer") as tmp:
        return _transfer_into(source, target, tmp, config, dataset, max_length, eval_samples, save, progress)


def _transfer_into(
    source: str | os.PathLike,
    target: str | os.PathLike,
    out: Path,
    config: TransferConfig,
    dataset: str,
    max_length: int,
    eval_samples: int,
    save: str,
    progress: bool,
) -> dict:
    trajectory = Trajectory(source)
    model = load_target(target)
    check_compatible(trajectory, model, source)
    tokenizer = AutoTokenizer.from_pretrained(target)
    path = source_path(trajectory, config.spacing, config.steps)
    steps = len(path) - 1
    config = TransferConfig(**{**config.to_dict(), "steps": steps})
    train_rows = steps * config.batches_per_step * config.batch_size
    train, validation, collate = task_data(model, tokenizer, dataset, config.seed, train_rows, eval_samples, max_length)
    gradients = LossGradients(model, gradient_batches(train, collate, config))
    evaluator = _Evaluator(model, validation, collate)
    spec = permutation_spec(model)
    init = {n: p.detach().clone() for n, p in model.named_parameters() if n in trajectory.names}
    points = [{"step": 0, "lambda": path.lambdas[0], **evaluator(init)}]
    if save == "all":
        _save_point(model, tokenizer, init, out / "checkpoint-0")
    bar = progress_bar(total=steps, desc=f"transfer ({config.method})", disable=not progress)
    for result in transfer_trajectory(path, init, spec, gradients, config.method, config.max_sweeps, progress=progress):
        row = {"step": result.step, "lambda": path.lambdas[result.step], **evaluator(result.params)}
        if result.match is not None:
            row.update(sweeps=result.match.sweeps, objective=result.match.objective)
        points.append(row)
        if save == "all" or result.step == steps:
            _save_point(model, tokenizer, result.params, out / f"checkpoint-{result.step}")
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        bar.update(1)
    bar.close()
    report = {
        "source": str(source),
        "target": str(target),
        "dataset": dataset,
        "config": config.to_dict(),
        "points": points,
        "permutation": spec.to_json(result.permutation),
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


class _Evaluator:
    """Loss (and accuracy for classifiers) of a parameter point on the validation rows."""

    def __init__(self, model: PreTrainedModel, data, collate) -> None:
        self.model, self.data, self.collate = model, data, collate
        self.classify = type(model).__name__.endswith("ForSequenceClassification")

    def __call__(self, params: dict[str, torch.Tensor]) -> dict[str, float]:
        _load(self.model, params)
        torch.manual_seed(0)  # the same MLM masks for every point
        return evaluate(self.model, self.data, self.collate, classify=self.classify)


def _load(model: PreTrainedModel, params: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in params:
                p.copy_(params[name])


def _save_point(model: PreTrainedModel, tokenizer, params: dict[str, torch.Tensor], folder: Path) -> None:
    _load(model, params)
    model.save_pretrained(folder)  # inside the transfer's temporary output folder
    tokenizer.save_pretrained(folder)
