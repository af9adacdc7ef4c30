"""CMD — correlation mode decomposition of training trajectories (Brokman, Betser et al., ICLR 2024).

Parameters fall into a few *modes* whose trajectories are highly correlated, so θ_i(t) ≈ a_i·r_m(t) + b_i with
one reference trajectory r_m per mode. Three uses, one module each:

* post-hoc (:func:`fit_cmd`): decompose a saved trajectory, streaming over parameter blocks;
* online (:class:`OnlineCMD`, :class:`CMDCallback`): modes frozen after a warm-up, coefficients updated by
  recursive least squares; the CMD weights are used like an EMA;
* embedded (:class:`Embedding`): tensors whose coefficients stopped moving follow a·r(t)+b and stop training.

Example::

    result = fit_cmd(Trajectory("runs/demo/snapshots"), modes=5)
    weights = result.reconstruct(step=100)

The folder is ``cmd`` although the standard library has a ``cmd`` module: inside the package every import is
absolute (``hf_efftrain.cmd``), so the two only meet for a script run with ``hf_efftrain/`` itself on
``sys.path``, which nothing here does. The name is the method's, the CLI's (``hf-efftrain cmd``) and users'
import path; a renamed package with an alias at ``hf_efftrain.cmd`` would shadow just the same.
"""

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.cmd.callback": ("CMDCallback",),
        "hf_efftrain.cmd.arguments": ("CMDArguments",),
        "hf_efftrain.cmd.config": ("CMDConfig",),
        "hf_efftrain.cmd.embedded": (
            "Embedding",
            "embed_tensors",
        ),
        "hf_efftrain.cmd.online": ("OnlineCMD",),
        "hf_efftrain.cmd.posthoc": ("fit_cmd",),
        "hf_efftrain.cmd.result": ("CMDResult",),
    },
)

__all__ = [
    "CMDArguments",
    "CMDCallback",
    "CMDConfig",
    "CMDResult",
    "Embedding",
    "OnlineCMD",
    "embed_tensors",
    "fit_cmd",
]
