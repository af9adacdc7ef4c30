"""How much memory the TWA basis takes, and a clear error *before* allocating more than is available.

The basis is the big cost of TWA: k checkpoints × D trainable parameters × 4 bytes (float32), split across
processes, plus a few D-sized working vectors. Checking up front turns an out-of-memory crash half-way
through a run into an error that says how much is needed and what to change. Example::

    plan = BasisPlan(dim=22_700_000, checkpoints=10, world=2)
    plan.basis_mb            # per process
    plan.check(limit_mb=None)  # compares with the memory available on the parameters' device
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from hf_efftrain.errors import BasisMemoryError
from hf_efftrain.twa.distributed import rows_on

MB = 2**20
# anchor/centre, running sum, projection buffer, gradient copy, momentum (subspace) or scales (layerwise)
WORKING_VECTORS = 5


@dataclass(frozen=True)
class BasisPlan:
    """Memory of a basis of ``checkpoints`` rows of ``dim`` values, stored with ``bits`` per value (0 = float32)."""

    dim: int
    checkpoints: int
    world: int = 1
    rank: int = 0
    bits: int = 0
    keeps_last: bool = False  # twa_init="last": the last checkpoint is held until the phase starts

    @property
    def rows(self) -> int:
        """Rows this process stores."""
        return rows_on(self.rank, self.checkpoints, self.world)

    @property
    def bytes_per_value(self) -> float:
        """Bytes one stored basis value takes: 4 in float32, less when quantized."""
        return 4.0 if self.bits == 0 else packed_bytes_per_value(self.bits)

    @property
    def basis_mb(self) -> float:
        """Basis storage on this process, in MiB."""
        return self.rows * self.dim * self.bytes_per_value / MB

    @property
    def peak_mb(self) -> float:
        """Basis plus working vectors (and, for a quantized basis, its float32 rows before quantization)."""
        raw = self.rows * self.dim * 4 if self.bits else 0
        working = WORKING_VECTORS + int(self.keeps_last)
        return (self.rows * self.dim * self.bytes_per_value + raw + working * self.dim * 4) / MB

    def check(self, limit_mb: float | None = None, device: torch.device | str = "cpu") -> None:
        """Raise :class:`BasisMemoryError` if the peak would exceed ``limit_mb`` (default: memory available now)."""
        available = limit_mb if limit_mb is not None else available_mb(torch.device(device))
        if self.peak_mb > available:
            raise BasisMemoryError(
                f"the TWA basis needs {self.peak_mb:,.1f} MiB per process ({self.rows} of {self.checkpoints} "
                f"checkpoint rows × {self.dim:,} parameters, plus working vectors) but only {available:,.1f} MiB "
                "is available: collect fewer checkpoints (raise twa_every), train fewer parameters (PEFT), "
                "use twa_form='layerwise' with twa_bits, or spread the basis over more processes"
            )


def packed_bytes_per_value(bits: int) -> float:
    """Bytes per stored code: bit widths dividing 8 are packed, the others take one byte."""
    return bits / 8 if 8 % bits == 0 else 1.0


def available_mb(device: torch.device) -> float:
    """Free memory where the basis lives: the accelerator's free memory, else the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free / MB
    return psutil.virtual_memory().available / MB


def tensor_mb(*tensors: torch.Tensor) -> float:
    """Storage of some tensors, in MiB."""
    return sum(t.numel() * t.element_size() for t in tensors) / MB
