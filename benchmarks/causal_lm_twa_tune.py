"""Choose LoRA + TWA's knobs on SmolLM2 on tuning data: held-out blocks the contract never scores, a seed it never uses.

One LoRA run of the contract's schedule (``--steps``, linear decay, the seed ``--seeds``) keeps the adapter at
TWA's collection steps (every ``--twa-every`` steps from ``--twa-collect-from`` of the run up to the TWA start,
``--steps`` − ``--twa-steps``) and the batches of the run's last ``--twa-steps`` steps. Scored on the tuning
blocks: LoRA after all its steps (what TWA must match), the adapter at the TWA start (where ``twa_init="last"``
begins), and their plain average (SWA). Then each candidate (form, lr, trust, init) runs its ``--twa-steps`` TWA
steps on those batches from the kept adapters (``hf_efftrain.twa.train_twa``, the same solver as the in-run
callback) and is scored. The tuning blocks are the held-out articles' blocks after the contract's
``--eval-blocks``, so the choice never sees what ``causal_lm.json`` reports. Writes
``benchmarks/results/causal_lm_twa_tuning.json`` and ``.md``::

    python -m benchmarks.causal_lm_twa_tune                      # seed 2, tuning blocks 64..127
    python -m benchmarks.causal_lm_twa_tune --model tiny --steps 8 --twa-steps 2 --twa-every 2 --no-write
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from transformers import TrainerCallback, default_data_collator, set_seed

from benchmarks.causal_lm import _parser, arm_arguments, load_lora_model, load_task
from benchmarks.harness import run_facts, write_result
from hf_efftrain import EfficientTrainer
from hf_efftrain.twa import TrainableView, TWAConfig, train_twa
from hf_efftrain.twa.train import collect

# (form, lr, trust, init): the contract's setting first, then larger steps, no trust region, the layer-wise form
CANDIDATES = [
    ("subspace", 0.05, 1.0, "last"),
    ("subspace", 0.2, 1.0, "last"),
    ("subspace", 1.0, 1.0, "last"),
    ("subspace", 1.0, 0.0, "last"),
    ("subspace", 4.0, 0.0, "last"),
    ("layerwise", 0.05, 1.0, "last"),
    ("layerwise", 0.2, 1.0, "last"),
    ("subspace", 0.05, 1.0, "average"),
]


class KeepAdapters(TrainerCallback):
    """The trainable vector (the adapter) at ``steps``; training goes on to the end."""

    def __init__(self, steps: list[int]) -> None:
        self.steps, self.vectors = set(steps), {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.vectors[state.global_step] = TrainableView(model).vector()


def parse_candidate(text: str) -> tuple[str, float, float, str]:
    """``form:lr:trust:init``, e.g. ``subspace:0.2:1:last``."""
    form, lr, trust, init = text.split(":")
    return form, float(lr), float(trust), init


def budget_note(opts, collected: list[int]) -> str:
    """How the run was made, for the result file."""
    return (
        f"One LoRA run (rank {opts.rank} on q/k/v/o, {opts.steps} steps of batch {opts.batch_size} x "
        f"{opts.block_size} tokens, lr {opts.lr} linear decay, seed {opts.seeds[0]}); adapters kept at steps "
        f"{collected[0]}..{collected[-1]} every {opts.twa_every}; each candidate runs {opts.twa_steps} TWA steps on "
        f"the batches of the run's last {opts.twa_steps} steps; scored on {opts.eval_blocks} held-out blocks after "
        f"the contract's first {opts.eval_blocks}; torch threads {opts.threads}."
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--candidates", nargs="+", type=parse_candidate, help="form:lr:trust:init (default: a grid)")
    parser.set_defaults(seeds=[2], eval_blocks=64, name="causal_lm_twa_tuning", threads=2)
    opts = parser.parse_args(argv)
    candidates = opts.candidates or CANDIDATES
    torch.set_num_threads(opts.threads)
    contract_blocks = opts.eval_blocks
    opts.eval_blocks = 2 * contract_blocks  # load both; the contract's first half is never scored here
    tokenizer, blocks, folder = load_task(opts)
    if len(blocks["validation"]) <= contract_blocks:
        raise SystemExit(f"the held-out articles have only {len(blocks['validation'])} blocks: none left to tune on")
    blocks["validation"] = blocks["validation"].select(range(contract_blocks, len(blocks["validation"])))
    opts.eval_blocks = contract_blocks
    seed, start = opts.seeds[0], opts.steps - opts.twa_steps
    config = TWAConfig(start=start, collect_from=opts.twa_collect_from, every=opts.twa_every, steps=opts.twa_steps)
    collected = config.collection_steps(opts.steps)
    keep = KeepAdapters(collected)
    model = load_lora_model(folder, opts, len(tokenizer), seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as out:
        args = arm_arguments("base", out, opts, seed)  # plain LoRA on the contract's schedule
        trainer = EfficientTrainer(
            model=model, args=args, train_dataset=blocks["train"], eval_dataset=blocks["validation"],
            data_collator=default_data_collator, callbacks=[keep],
        )  # fmt: skip
        trainer.train()
        loader = iter(trainer.get_train_dataloader())
        batches = [next(loader) for _ in range(opts.steps)][start:]
        view = TrainableView(model)

        def score(arm: str, **extra: Any) -> None:
            rows.append({"arm": arm, "tuning_eval_loss": trainer.evaluate()["eval_loss"], **extra})
            print(rows[-1], flush=True)

        score(f"lora, {opts.steps} steps")
        thetas = [keep.vectors[s] for s in collected]
        spread = collect(model, thetas, TWAConfig()).spread  # the trust region's unit, as the callback measures it
        view.assign(thetas[-1])
        score(f"adapter at step {collected[-1]} (the TWA start)")
        view.assign(torch.stack(thetas).mean(0))
        score(f"plain average of the {len(thetas)} adapters (SWA)")
        for form, lr, trust, init in candidates:
            view.assign(thetas[-1])
            set_seed(seed)  # the same dropout masks for every candidate: they differ only in their knobs
            knobs = TWAConfig(form=form, lr=lr, trust=trust, init=init, steps=opts.twa_steps)
            solver = train_twa(model, thetas, batches, knobs, max_grad_norm=args.max_grad_norm)
            knob = {"form": form, "lr": lr, "trust": trust, "init": init, "confined_steps": solver.confined_steps}
            knob["moved_spreads"] = solver.distance_from_start() / spread  # how far the phase went
            score(f"twa {form} lr={lr} trust={trust} init={init}", **knob)
    lora = rows[0]["tuning_eval_loss"]
    for row in rows:
        row["minus_lora"] = row["tuning_eval_loss"] - lora
    best = min((r for r in rows if r["arm"].startswith("twa")), key=lambda r: r["tuning_eval_loss"])
    opts.budget_note = opts.budget_note or budget_note(opts, collected)
    result = {
        "best": best["arm"],
        "best_minus_lora": best["minus_lora"],
        "collection_steps": collected,
        "tuning_blocks": f"held-out blocks {contract_blocks}..{contract_blocks + len(blocks['validation']) - 1} "
        f"(causal_lm.json scores blocks 0..{contract_blocks - 1})",
        "candidates": rows,
        **run_facts(seeds=[seed], **{k: v for k, v in vars(opts).items() if k not in ("candidates", "seeds")}),
    }
    if not opts.no_write:
        columns = ("arm", "tuning_eval_loss", "minus_lora", "confined_steps", "moved_spreads")
        table = [{c: row.get(c, "") for c in columns} for row in rows]
        write_result(opts.name, result, "LoRA + TWA on SmolLM2: knobs chosen on tuning blocks", {"Candidates": table})
    return result


if __name__ == "__main__":
    main()
