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

import psutil
import torch
import transformers
from datasets import DatasetDict
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedModel

from hf_efftrain.errors import TransferError, TransferMismatchError
from hf_efftrain.log import get_logger, progress_bar
from hf_efftrain.model_folder import load_model, load_tokenizer, read_config
from hf_efftrain.outputs import check_output, output_directory
from hf_efftrain.tasks import load_splits, tokenize_classification, tokenize_lm_blocks
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.transfer.config import TransferConfig
from hf_efftrain.transfer.engine import transfer_trajectory
from hf_efftrain.transfer.evaluation import evaluate
from hf_efftrain.transfer.gradients import LossGradients, step_batches
from hf_efftrain.transfer.hf_spec import permutation_spec
from hf_efftrain.transfer.matching import kept_pair_bytes
from hf_efftrain.transfer.prior import describe_prior, resolve_prior
from hf_efftrain.transfer.schedule import source_path
from hf_efftrain.transfer.spec import PermutationSpec

logger = get_logger("hf_efftrain.transfer")

REPORT_FILE = "transfer_report.json"


def target_class(folder: str | os.PathLike, max_length: int | None = None) -> tuple[type[PreTrainedModel], object]:
    """The model class its ``config.json`` names (sequence classifier, LM...) and the config, read without weights.

    ``max_length`` (tokens per example) is checked against the config's positions.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise TransferMismatchError(f"{folder}: no config.json; TARGET_INIT must be a save_pretrained folder")
    config = read_config(folder, what="TARGET")
    positions = getattr(config, "max_position_embeddings", None)
    if max_length is not None and positions is not None and max_length > positions:
        raise TransferError(f"--max-length {max_length} exceeds the target's max_position_embeddings ({positions})")
    names = config.architectures or []
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None:
        raise TransferMismatchError(f"{folder}: config.json names no model class transformers knows ({names})")
    return cls, config


def load_target(folder: str | os.PathLike, max_length: int | None = None) -> PreTrainedModel:
    """The target model, built with the class its ``config.json`` names, after the checks of :func:`target_class`."""
    cls, _ = target_class(folder, max_length)
    return load_model(folder, cls, what="TARGET").eval()


def check_compatible(trajectory: Trajectory, model: PreTrainedModel, source: str | os.PathLike) -> None:
    """Raise :class:`TransferMismatchError` unless every source tensor exists in the target with its shape."""
    first = trajectory.checkpoints[0].folder / "config.json"
    if first.is_file():
        source_type = read_config(first.parent, what="source checkpoint").model_type
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
    model: PreTrainedModel, tokenizer, splits: DatasetDict, seed: int, train_rows: int, eval_rows: int, max_length: int
):
    """(train, validation, collator) for the model's task; only the rows needed are tokenized."""
    eval_split = "validation" if "validation" in splits else "test"
    if eval_split not in splits:
        raise TransferError("--dataset has no validation or test split to score the transferred points on")
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
    target: str | os.PathLike | PreTrainedModel,
    out: str | os.PathLike,
    config: TransferConfig,
    dataset: str = "rotten_tomatoes",
    max_length: int = 64,
    eval_samples: int = 500,
    save: str = "end",
    progress: bool = True,
    overwrite: bool = False,
    overwrite_flag: str = "--overwrite",
    *,
    tokenizer_path: str | os.PathLike | None = None,
    target_label: str | None = None,
) -> dict:
    """Transfer ``source``'s trajectory onto ``target``; write folders and the report under ``out``.

    ``target`` is a ``save_pretrained`` folder, or a model built in memory (a fresh initialization need not be
    written to disk first): then ``tokenizer_path`` gives the tokenizer and ``target_label`` what the report says.
    ``out`` is built beside its place and appears whole at the end; it may not be, hold, or become part of the
    source or the target, and an earlier transfer there is replaced only with ``overwrite``.
    """
    target_folder = None if isinstance(target, PreTrainedModel) else target
    inputs = [source, target_folder, tokenizer_path]
    out = check_output(out, "transfer", inputs=inputs, overwrite=overwrite, flag=overwrite_flag)
    with output_directory(out, "transfer") as tmp:
        return _transfer_into(
            source, target, tmp, config, dataset, max_length, eval_samples, save, progress, tokenizer_path, target_label
        )


GROWTH_PER_KEPT_BYTE = 1.5
"""Resident memory a transfer gains per byte of kept gradient pairs: measured 1.5 (MiniLM-L6, T = 20) and 1.4
(SmolLM2-135M, T = 10) with ``benchmarks/transfer_speed.py`` (each step's full gradients are freed, but the
allocator does not return all of it)."""


def check_memory(
    spec: PermutationSpec, shapes: dict[str, torch.Size], config: TransferConfig, available: float | None = None
) -> None:
    """Refuse up front a transfer whose kept gradient pairs would not fit in the memory available now (a run killed
    for memory halfway loses everything; the pairs grow by one per step, so the end is what counts)."""
    pairs = 0 if config.method == "naive" else config.steps
    need = GROWTH_PER_KEPT_BYTE * kept_pair_bytes(spec, shapes, pairs)
    available = psutil.virtual_memory().available if available is None else available
    if need > 0.8 * available:
        per_pair = GROWTH_PER_KEPT_BYTE * kept_pair_bytes(spec, shapes, 1)
        fits = int(0.8 * available // per_pair)
        raise TransferError(
            f"a T = {pairs} transfer of this model needs about {need / 1e9:.1f} GB for its gradient pairs, more "
            f"than this machine can spare ({available / 1e9:.1f} GB available): pass --steps {fits} or fewer, or "
            "free memory"
        )


def _transfer_into(
    source: str | os.PathLike,
    target: str | os.PathLike | PreTrainedModel,
    out: Path,
    config: TransferConfig,
    dataset: str,
    max_length: int,
    eval_samples: int,
    save: str,
    progress: bool,
    tokenizer_path: str | os.PathLike | None,
    target_label: str | None,
) -> dict:
    trajectory = Trajectory(source)
    trajectory.check_finite()  # a diverged source would be transferred NaN for NaN
    path = source_path(trajectory, config.spacing, config.steps)
    if max_length < 1 or eval_samples < 1:
        raise TransferError(f"--max-length and --eval-samples must be at least 1, got {max_length} and {eval_samples}")
    splits = load_splits(dataset, seed=config.seed, need=("train", "text"))  # a bad --dataset fails before loading
    if isinstance(target, PreTrainedModel):  # a fresh initialization built in memory
        model = target.eval()
        check_compatible(trajectory, model, source)
        tokenizer = load_tokenizer(tokenizer_path, what="tokenizer", needed_for="transfer (to tokenize --dataset)")
    else:
        cls, target_config = target_class(target, max_length)
        with torch.device("meta"):  # names and shapes only: a mismatch fails before any weight is read
            check_compatible(trajectory, cls(target_config), source)
        tokenizer = load_tokenizer(target, what="TARGET", needed_for="transfer (to tokenize --dataset)")
        model = load_model(target, cls, what="TARGET").eval()
    steps = len(path) - 1
    config = TransferConfig(**{**config.to_dict(), "steps": steps})
    spec = permutation_spec(model)
    check_memory(spec, {n: p.shape for n, p in model.named_parameters() if n in trajectory.names}, config)
    train_rows = steps * config.batches_per_step * config.batch_size
    train, validation, collate = task_data(model, tokenizer, splits, config.seed, train_rows, eval_samples, max_length)
    gradients = LossGradients(model, gradient_batches(train, collate, config))
    evaluator = _Evaluator(model, validation, collate)
    init = {n: p.detach().clone() for n, p in model.named_parameters() if n in trajectory.names}
    points = [{"step": 0, "lambda": path.lambdas[0], **evaluator(init)}]
    if save == "all":
        _save_point(model, tokenizer, init, out / "checkpoint-0")
    prior = resolve_prior(spec, path[0], init, config.stay, config.stay_at, config.warm_start)
    if config.method != "naive":
        logger.info("matching prior: %s", describe_prior(prior.to_dict()))
    bar = progress_bar(total=steps, desc=f"transfer ({config.method})", disable=not progress)
    results = transfer_trajectory(
        path,
        init,
        spec,
        gradients,
        config.method,
        config.max_sweeps,
        progress=progress,
        stay=prior.stay,
        pin_shared=config.pin_shared,
        stay_at=prior.at,
        warm_start=prior.warm_start,
    )
    for result in results:
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
        "target": target_label or str(target),
        "dataset": dataset,
        "config": config.to_dict(),
        "prior": prior.to_dict(),
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
