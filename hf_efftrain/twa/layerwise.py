"""The layer-wise basis of TWA (journal version): one trainable coefficient per checkpoint and per tensor.

Each checkpoint i is centred on the average c and cut into blocks b (one per parameter tensor); each block
is stored normalized, P̃ᵢ_b = (wᵢ_b − c_b)/sᵢ_b with sᵢ_b = ‖wᵢ_b − c_b‖, optionally quantized (see
:mod:`quantize`), with its norm sᵢ_b kept aside. The weights are θ = c + Σᵢ Σ_b Xᵢ_b sᵢ_b P̃ᵢ_b, so X = 0 is
the plain average and Xᵢ = 1 (others 0) is checkpoint i: the coefficients are in units of "one checkpoint's
deviation", the same for a bias vector and an attention matrix, which is what a per-coordinate optimizer
(AdamW) needs. ∂L/∂Xᵢ_b = sᵢ_b ⟨P̃ᵢ_b, g_b⟩. Per-tensor coefficients let each layer choose its own mix.

Rows are split over processes like :class:`SubspaceBasis`: each process holds its checkpoints' rows and
their coefficients; θ needs one all-reduce of a D-vector. Example::

    basis = LayerwiseBasis(centre, {0: w0, 1: w1}, sizes=view.sizes, bits=4)
    theta = basis.weights(torch.zeros(basis.local_rows, basis.blocks))   # == centre
"""

from __future__ import annotations

from typing import Any

import torch

from hf_efftrain.distributed import all_reduce_sum
from hf_efftrain.twa.memory import tensor_mb
from hf_efftrain.twa.quantize import QuantizedRow, dequantize, quantize_blocks


class LayerwiseBasis:
    """Centred, block-normalized (and maybe quantized) rows of this process's checkpoints.

    ``raw_rows`` (global checkpoint index -> θ) is emptied while the rows are encoded, to bound memory.
    """

    def __init__(
        self, centre: torch.Tensor, raw_rows: dict[int, torch.Tensor], sizes: list[int], bits: int = 0
    ) -> None:
        self.centre = centre.float()
        self.sizes = list(sizes)
        self.bits = bits
        self.indices = sorted(raw_rows)
        self.rows: list[torch.Tensor | QuantizedRow] = []
        norms = []
        for index in self.indices:  # popped one by one: raw and encoded rows never all coexist
            row, norm = self._encode(raw_rows.pop(index))
            self.rows.append(row)
            norms.append(norm)
        self.norms = torch.stack(norms) if norms else torch.zeros(0, len(self.sizes), device=self.centre.device)

    def _encode(self, raw: torch.Tensor) -> tuple[torch.Tensor | QuantizedRow, torch.Tensor]:
        blocks = (raw.float() - self.centre).split(self.sizes)
        norms = torch.stack([b.norm() for b in blocks])
        row = torch.cat([b / n if n > 0 else b for b, n in zip(blocks, norms, strict=True)])
        return (quantize_blocks(row, self.sizes, self.bits) if self.bits else row), norms

    @property
    def local_rows(self) -> int:
        """Checkpoints stored on this process (its share of the round-robin split)."""
        return len(self.rows)

    @property
    def blocks(self) -> int:
        """Number of tensors, each with its own coefficient per checkpoint."""
        return len(self.sizes)

    def row(self, position: int) -> torch.Tensor:
        """The float32 direction of local row ``position``."""
        stored = self.rows[position]
        return dequantize(stored) if isinstance(stored, QuantizedRow) else stored

    def coefficient_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """∂L/∂X for this process's rows: ``[local_rows, blocks]`` of block-wise inner products."""
        out = torch.zeros(self.local_rows, self.blocks, device=grad.device)
        for position in range(self.local_rows):
            products = (self.row(position) * grad).split(self.sizes)
            out[position] = torch.stack([p.sum() for p in products])
        return out * self.norms

    def weights(self, coefficients: torch.Tensor) -> torch.Tensor:
        """θ = c + Σ_all rows X P̃ (one all-reduce of the Σ part)."""
        offset = torch.zeros_like(self.centre)
        expand = torch.tensor(self.sizes, device=self.centre.device)
        scaled = coefficients * self.norms
        for position in range(self.local_rows):
            offset.add_(self.row(position) * scaled[position].repeat_interleave(expand))
        return self.centre + all_reduce_sum(offset)

    @property
    def memory_mb(self) -> float:
        """Storage of this process's rows, in MiB (packed codes and per-block scales when quantized)."""
        if self.bits:
            return sum(r.nbytes for r in self.rows) / 2**20
        return tensor_mb(*self.rows)

    def state_dict(self) -> dict[str, Any]:
        """Centre, rows (quantized codes when ``bits``) and norms, for a checkpoint."""
        if self.bits:
            rows = [{"codes": r.codes, "mins": r.mins, "scales": r.scales} for r in self.rows]
        else:
            rows = list(self.rows)
        return {"centre": self.centre, "indices": self.indices, "rows": rows, "norms": self.norms, "bits": self.bits}

    @classmethod
    def from_state(cls, state: dict[str, Any], sizes: list[int]) -> LayerwiseBasis:
        """Rebuild a basis from :meth:`state_dict`'s output and the tensors' sizes (resume)."""
        basis = cls(state["centre"], {}, sizes, int(state["bits"]))
        basis.indices = list(state["indices"])
        basis.norms = state["norms"]
        if basis.bits:
            basis.rows = [
                QuantizedRow(r["codes"], r["mins"], r["scales"], list(sizes), basis.bits) for r in state["rows"]
            ]
        else:
            basis.rows = list(state["rows"])
        return basis
