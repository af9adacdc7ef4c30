"""Online CMD: modes frozen after a warm-up, coefficients updated by recursive least squares at each snapshot.

With the modes fixed, the least-squares fit θ_i ≈ a_i·r'(t) + b_i needs only running sums: per mode n, Σr',
Σr'² (shared by all its parameters) and per parameter Σθ and Σr'θ (float64). An update is O(N); no
history is kept. ``r' = r − shift`` is centred on the warm-up mean to avoid cancellation. Example::

    online = OnlineCMD.from_result(fit_cmd(Trajectory("warmup"), modes=5))
    online.update(dict(model.named_parameters()))     # at every later snapshot
    weights = online.weights(dict(model.named_parameters()))   # θ̂(t) = a·r'(t) + b, like an EMA
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hf_efftrain.cmd.result import CMDResult


class OnlineCMD:
    """Running least-squares state of every tracked parameter against M frozen reference parameters."""

    def __init__(self, reference_ids: list[tuple[str, int]], shift: torch.Tensor, labels: dict[str, torch.Tensor]):
        self.reference_ids = list(reference_ids)
        self.shift = shift.double()
        self.labels = labels
        modes = len(reference_ids)
        self.count = 0
        self.sum_r = torch.zeros(modes, dtype=torch.float64)
        self.sum_rr = torch.zeros(modes, dtype=torch.float64)
        self.sum_theta = {n: torch.zeros(t.shape, dtype=torch.float64) for n, t in labels.items()}
        self.sum_rtheta = {n: torch.zeros(t.shape, dtype=torch.float64) for n, t in labels.items()}
        self.frozen: set[str] = set()  # tensors whose sums no longer change (embedded CMD)

    @classmethod
    def from_result(cls, result: CMDResult) -> OnlineCMD:
        """Start from a post-hoc fit of the warm-up: its least-squares sums are recovered exactly from (a, b)."""
        references = torch.from_numpy(result.references)
        shift = references.mean(dim=1)
        online = cls(result.reference_ids, shift, dict(result.labels))
        centred = references - shift[:, None]
        online.count = references.shape[1]
        online.sum_r = centred.sum(dim=1)
        online.sum_rr = (centred**2).sum(dim=1)
        for name, labels in result.labels.items():
            a = result.a[name].double()
            b_centred = result.b[name].double() + a * shift[labels.long()]
            # residuals of a least-squares fit sum to 0 and are orthogonal to r', and Σr' = 0 here:
            online.sum_theta[name] = online.count * b_centred
            online.sum_rtheta[name] = a * online.sum_rr[labels.long()]
        return online

    @property
    def num_modes(self) -> int:
        return len(self.reference_ids)

    def reference_values(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """r'(t): the current value of each mode's reference parameter, minus the shift."""
        values = [float(params[name].detach().reshape(-1)[index]) for name, index in self.reference_ids]
        return torch.tensor(values, dtype=torch.float64) - self.shift

    @torch.no_grad()
    def update(self, params: Mapping[str, torch.Tensor]) -> None:
        """Add one snapshot (current values of the tracked parameters) to the running sums: O(N)."""
        r = self.reference_values(params)
        self.count += 1
        self.sum_r += r
        self.sum_rr += r**2
        for name, labels in self.labels.items():
            if name in self.frozen:
                continue
            theta = params[name].detach().to("cpu", torch.float64)
            self.sum_theta[name] += theta
            self.sum_rtheta[name] += r[labels.long()] * theta

    def coefficients(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of one tensor in the centred form θ ≈ a·r' + b (float64)."""
        labels = self.labels[name].long()
        n = float(self.count)
        det = n * self.sum_rr - self.sum_r**2
        a = (n * self.sum_rtheta[name] - self.sum_r[labels] * self.sum_theta[name]) / det[labels]
        b = (self.sum_theta[name] - a * self.sum_r[labels]) / n
        return a, b

    def weights(self, params: Mapping[str, torch.Tensor], names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """θ̂(t) = a·r'(t) + b at the current reference values, in each parameter's dtype."""
        r = self.reference_values(params)
        out = {}
        for name in names if names is not None else list(self.labels):
            a, b = self.coefficients(name)
            out[name] = (a * r[self.labels[name].long()] + b).to(params[name].dtype)
        return out

    # ---- persistence (resume) -----------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue exactly, as a flat dict of tensors (safetensors-ready)."""
        out = {
            "shift": self.shift,
            "sum_r": self.sum_r,
            "sum_rr": self.sum_rr,
            "count": torch.tensor([self.count]),
        }
        for name in self.labels:
            out[f"label.{name}"] = self.labels[name]
            out[f"sum_theta.{name}"] = self.sum_theta[name]
            out[f"sum_rtheta.{name}"] = self.sum_rtheta[name]
        return out

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], reference_ids: list[tuple[str, int]], frozen: list[str]):
        """Inverse of :meth:`state_tensors`."""
        labels = {k[len("label.") :]: v for k, v in tensors.items() if k.startswith("label.")}
        online = cls(reference_ids, tensors["shift"], labels)
        online.count = int(tensors["count"][0])
        online.sum_r, online.sum_rr = tensors["sum_r"].clone(), tensors["sum_rr"].clone()
        online.sum_theta = {n: tensors[f"sum_theta.{n}"].clone() for n in labels}
        online.sum_rtheta = {n: tensors[f"sum_rtheta.{n}"].clone() for n in labels}
        online.frozen = set(frozen)
        return online


def reference_tensor_names(online: OnlineCMD) -> set[str]:
    """Tensors holding a reference parameter (they must keep training: the modes follow them)."""
    return {name for name, _ in online.reference_ids}
