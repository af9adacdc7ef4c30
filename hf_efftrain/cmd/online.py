"""Online CMD: modes frozen after a warm-up, coefficients updated by recursive least squares at each snapshot.

With the modes fixed, the least-squares fit θ_i ≈ a_i·r'(t) + b_i needs only running moments: per mode n the mean
of r' and Σ(r' − mean)² (float64, M numbers), and per parameter the mean of θ and the co-moment
Σ(r' − mean_r)(θ − mean_θ), both float32: 8 bytes per parameter (+1 for its mode label). They are updated the
Welford way, which adds deviations from the running means instead of raw sums: float64 is not needed because
nothing large cancels (raw sums Σθ, Σr'θ would lose the slow motion of a weight under its large value in float32).
An update is O(N); no history is kept. ``r' = r − shift`` is centred on the warm-up mean.

``forgetting`` γ ∈ (0, 1] is the RLS forgetting factor: before each update every earlier snapshot's weight is
multiplied by γ (γ = 1: all snapshots count alike). Why: with equal weights the fit at the end of a run is pulled
towards the early, fast-moving part of the trajectory, so θ̂(T) lags θ(T); γ < 1 makes the fit follow the recent
dynamics (an effective window of about 1 / (1 − γ) snapshots) while still smoothing along the modes. Example::

    online = OnlineCMD.from_result(fit_cmd(Trajectory("warmup"), modes=5))
    online.update(dict(model.named_parameters()))     # at every later snapshot
    weights = online.weights(dict(model.named_parameters()))   # θ̂(t) = a·r'(t) + b, like an EMA
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hf_efftrain.cmd.result import CMDResult


class OnlineCMD:
    """Running least-squares moments of every tracked parameter against M frozen reference parameters."""

    def __init__(
        self,
        reference_ids: list[tuple[str, int]],
        shift: torch.Tensor,
        labels: dict[str, torch.Tensor],
        forgetting: float = 1.0,
    ):
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        self.reference_ids = list(reference_ids)
        self.shift = shift.double()
        self.labels = labels
        self.forgetting = forgetting
        modes = len(reference_ids)
        self.count = 0
        self.weight = 0.0  # Σ of the snapshots' weights (= count when forgetting is 1)
        self.mean_r = torch.zeros(modes, dtype=torch.float64)
        self.m2_r = torch.zeros(modes, dtype=torch.float64)  # Σ (r' − mean_r)²
        self.mean_theta = {n: torch.zeros(t.shape, dtype=torch.float32) for n, t in labels.items()}
        self.co_moment = {n: torch.zeros(t.shape, dtype=torch.float32) for n, t in labels.items()}
        self.frozen: set[str] = set()  # tensors whose moments no longer change (embedded CMD)

    @classmethod
    def from_result(cls, result: CMDResult, forgetting: float = 1.0) -> OnlineCMD:
        """Start from a post-hoc fit of the warm-up: its least-squares moments are recovered exactly from (a, b).

        The warm-up snapshots enter with equal weights; ``forgetting`` applies from the first update on."""
        references = torch.from_numpy(result.references)
        shift = references.mean(dim=1)
        online = cls(result.reference_ids, shift, dict(result.labels), forgetting)
        centred = references - shift[:, None]
        online.count = references.shape[1]
        online.weight = float(online.count)
        online.mean_r = centred.mean(dim=1)
        online.m2_r = ((centred - online.mean_r[:, None]) ** 2).sum(dim=1)
        for name, labels in result.labels.items():
            index = labels.long()
            a = result.a[name].double()
            # θ ≈ a·r + b = a·r' + (b + a·shift); residuals of the fit sum to 0 and are orthogonal to r'
            online.mean_theta[name] = (result.b[name].double() + a * (shift[index] + online.mean_r[index])).float()
            online.co_moment[name] = (a * online.m2_r[index]).float()
        return online

    @property
    def num_modes(self) -> int:
        """The number of frozen modes M, one reference trajectory each."""
        return len(self.reference_ids)

    def reference_values(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """r'(t): the current value of each mode's reference parameter, minus the shift."""
        return reference_values(params, self.reference_ids, self.shift)

    @torch.no_grad()
    def update(self, params: Mapping[str, torch.Tensor]) -> None:
        """Add one snapshot (current values of the tracked parameters) to the running moments: O(N).

        Weighted Welford: earlier weights scale by γ (which scales the second moments and leaves the means), the new
        snapshot enters with weight 1."""
        r = self.reference_values(params)
        gamma = self.forgetting
        self.count += 1
        self.weight = gamma * self.weight + 1.0
        step = 1.0 / self.weight
        before = r - self.mean_r  # deviation from the old mean; the co-moment pairs it with the new one
        self.mean_r += before * step
        self.m2_r = gamma * self.m2_r + before * (r - self.mean_r)
        before = before.float()
        for name, labels in self.labels.items():
            if name in self.frozen:
                continue
            theta = params[name].detach().to("cpu", torch.float32)
            mean = self.mean_theta[name]
            mean.add_(theta - mean, alpha=step)
            if gamma != 1.0:
                self.co_moment[name].mul_(gamma)
            self.co_moment[name].addcmul_(before[labels.long()], theta - mean)

    def coefficients(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of one tensor in the centred form θ ≈ a·r' + b (float64)."""
        labels = self.labels[name].long()
        a = self.co_moment[name].double() / self.m2_r[labels]
        b = self.mean_theta[name].double() - a * self.mean_r[labels]
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
            "mean_r": self.mean_r,
            "m2_r": self.m2_r,
            "count": torch.tensor([self.count]),
            "weight": torch.tensor([self.weight], dtype=torch.float64),
            "forgetting": torch.tensor([self.forgetting], dtype=torch.float64),
        }
        for name in self.labels:
            out[f"label.{name}"] = self.labels[name]
            out[f"mean_theta.{name}"] = self.mean_theta[name]
            out[f"co_moment.{name}"] = self.co_moment[name]
        return out

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], reference_ids: list[tuple[str, int]], frozen: list[str]):
        """Inverse of :meth:`state_tensors` (also reads the float64 raw sums that earlier versions saved)."""
        labels = {k[len("label.") :]: v for k, v in tensors.items() if k.startswith("label.")}
        forgetting = float(tensors["forgetting"][0]) if "forgetting" in tensors else 1.0
        online = cls(reference_ids, tensors["shift"], labels, forgetting)
        online.count = int(tensors["count"][0])
        online.weight = float(tensors["weight"][0]) if "weight" in tensors else float(online.count)
        if "mean_r" not in tensors:
            tensors = _moments_from_sums(tensors, labels, online.count)
        online.mean_r, online.m2_r = tensors["mean_r"].clone(), tensors["m2_r"].clone()
        online.mean_theta = {n: tensors[f"mean_theta.{n}"].float().clone() for n in labels}
        online.co_moment = {n: tensors[f"co_moment.{n}"].float().clone() for n in labels}
        online.frozen = set(frozen)
        return online


def _moments_from_sums(tensors: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], count: int) -> dict:
    """Moments from the raw sums Σr', Σr'², Σθ, Σr'θ of a state saved before the moments form."""
    sum_r = tensors["sum_r"]
    out = {"mean_r": sum_r / count, "m2_r": tensors["sum_rr"] - sum_r**2 / count}
    for name, label in labels.items():
        sum_theta = tensors[f"sum_theta.{name}"]
        out[f"mean_theta.{name}"] = sum_theta / count
        out[f"co_moment.{name}"] = tensors[f"sum_rtheta.{name}"] - sum_r[label.long()] * sum_theta / count
    return out


def reference_values(
    params: Mapping[str, torch.Tensor], reference_ids: list[tuple[str, int]], shift: torch.Tensor
) -> torch.Tensor:
    """r'(t) = the current values of the reference parameters ``reference_ids`` minus ``shift`` (float64)."""
    values = [float(params[name].detach().reshape(-1)[index]) for name, index in reference_ids]
    return torch.tensor(values, dtype=torch.float64) - shift


def reference_tensor_names(online: OnlineCMD) -> set[str]:
    """Tensors holding a reference parameter (they must keep training: the modes follow them)."""
    return {name for name, _ in online.reference_ids}
