"""Trajectory transfer: move a learning trajectory onto a new initialization, without training.

Chijiwa (ICLR 2024, "Transferring Learning Trajectories of Neural Networks"): given a source trajectory
θ_0…θ_T and a new initialization θ'_0, build θ'_s = θ'_0 + π_s(θ_s − θ_0), where π_s permutes hidden units so
that gradients at the transferred points line up with those at the source points on the same batches
(π_s = argmax_π Σ_t ⟨g'_t, π(g_t)⟩). The transferred model reaches a non-trivial accuracy before any training
and then trains faster than from θ'_0. Claims, knobs and measured results: ``docs/transfer.md``.

Modules, one job each:

* ``groups`` — the :class:`PermutationGroup` protocol, its two kinds (free, block-structured attention) and
  their linear-assignment solvers;
* ``spec`` — which parameter axes each group permutes, applying a permutation;
* ``hf_spec`` / ``custom`` — specs generated for 🤗 transformers (from the architecture registry) and for
  ``nn.Sequential`` MLPs/CNNs;
* ``matching`` — gradient pairs and the coordinate descent over groups;
* ``engine`` — the GMT / FGMT / naive loops; ``schedule`` — source points (linear, cosine, checkpoints);
* ``gradients`` — loss gradients on fixed per-step batches; ``tool`` + ``cli`` — ``hf-efftrain transfer``.

Example::

    spec = permutation_spec(model)
    gradients = LossGradients(model, step_batches(batches, steps=10, per_step=2))
    path = InterpolatedPath(theta_0, theta_T, spacing("cosine", 10))
    *_, last = transfer_trajectory(path, target_init, spec, gradients, method="fgmt")
    model.load_state_dict(last.params, strict=False)
"""

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.transfer.config": ("TransferConfig",),
        "hf_efftrain.transfer.custom": ("sequential_spec",),
        "hf_efftrain.transfer.engine": (
            "TransferStep",
            "transfer_trajectory",
            "transferred_point",
        ),
        "hf_efftrain.transfer.gradients": (
            "LossGradients",
            "step_batches",
        ),
        "hf_efftrain.transfer.groups": (
            "AttentionGroup",
            "FreeGroup",
            "HeadPermutation",
            "PermutationGroup",
        ),
        "hf_efftrain.transfer.hf_spec": ("permutation_spec",),
        "hf_efftrain.transfer.matching": (
            "GradientPairs",
            "MatchInfo",
            "match_permutation",
        ),
        "hf_efftrain.transfer.schedule": (
            "CheckpointPath",
            "InterpolatedPath",
            "source_path",
            "spacing",
        ),
        "hf_efftrain.transfer.spec": (
            "Axis",
            "AxisPart",
            "PermutationSpec",
            "SpecBuilder",
        ),
    },
)

__all__ = [
    "AttentionGroup",
    "Axis",
    "AxisPart",
    "CheckpointPath",
    "FreeGroup",
    "GradientPairs",
    "HeadPermutation",
    "InterpolatedPath",
    "LossGradients",
    "MatchInfo",
    "PermutationGroup",
    "PermutationSpec",
    "SpecBuilder",
    "TransferConfig",
    "TransferStep",
    "match_permutation",
    "permutation_spec",
    "sequential_spec",
    "source_path",
    "spacing",
    "step_batches",
    "transfer_trajectory",
    "transferred_point",
]
