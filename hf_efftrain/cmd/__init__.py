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
"""

from hf_efftrain.cmd.callback import CMDCallback
from hf_efftrain.cmd.config import CMDArguments
from hf_efftrain.cmd.embedded import Embedding, embed_tensors
from hf_efftrain.cmd.online import OnlineCMD
from hf_efftrain.cmd.posthoc import fit_cmd
from hf_efftrain.cmd.result import CMDResult

__all__ = ["CMDArguments", "CMDCallback", "CMDResult", "Embedding", "OnlineCMD", "embed_tensors", "fit_cmd"]
