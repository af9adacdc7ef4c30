"""Per-block min/max quantization of basis rows, packed to ``bits`` per value, to cut the basis memory.

The layer-wise form of TWA stores, for every checkpoint and tensor, a normalized direction. Those
directions only steer the search, so a few bits each are enough (journal version of TWA): each block keeps
its own min and scale, and codes of 1, 2 or 4 bits are packed several to a byte (other widths take a byte).
Example::

    q = quantize_blocks(row, sizes=[6, 10], bits=4)      # 16 values -> 8 bytes + 2 (min, scale) pairs
    approx = dequantize(q)                               # within scale/2 of row, block by block
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizedRow:
    """Packed codes of one row and the (min, scale) of each of its blocks."""

    codes: torch.Tensor  # uint8, packed
    mins: torch.Tensor  # [blocks]
    scales: torch.Tensor  # [blocks]
    sizes: list[int]
    bits: int

    @property
    def nbytes(self) -> int:
        """Bytes the row takes: packed codes (several a byte at 1, 2, 4 bits) plus a float32 min and scale a block."""
        return self.codes.numel() + (self.mins.numel() + self.scales.numel()) * 4


def _per_byte(bits: int) -> int:
    return 8 // bits if 8 % bits == 0 else 1


def quantize_blocks(row: torch.Tensor, sizes: list[int], bits: int) -> QuantizedRow:
    """Quantize each block of ``row`` (lengths ``sizes``) to ``bits``-bit codes between its min and max."""
    levels = 2**bits - 1
    blocks = row.float().split(sizes)
    mins = torch.stack([b.min() for b in blocks])
    scales = (torch.stack([b.max() for b in blocks]) - mins) / levels
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    expand = torch.tensor(sizes, device=row.device)
    codes = ((row.float() - mins.repeat_interleave(expand)) / safe.repeat_interleave(expand)).round_()
    codes = codes.clamp_(0, levels).to(torch.uint8)
    per = _per_byte(bits)
    if per > 1:
        codes = torch.cat([codes, codes.new_zeros((-codes.numel()) % per)]).view(-1, per)
        shifts = torch.arange(per, device=row.device, dtype=torch.uint8) * bits
        codes = (codes << shifts).sum(dim=1, dtype=torch.uint8)
    return QuantizedRow(codes, mins, scales, list(sizes), bits)


def dequantize(q: QuantizedRow) -> torch.Tensor:
    """The float32 row that ``q`` encodes."""
    per = _per_byte(q.bits)
    codes = q.codes
    if per > 1:
        shifts = torch.arange(per, device=codes.device, dtype=torch.uint8) * q.bits
        codes = ((codes.unsqueeze(1) >> shifts) & (2**q.bits - 1)).reshape(-1)
    numel = sum(q.sizes)
    expand = torch.tensor(q.sizes, device=codes.device)
    return codes[:numel].float() * q.scales.repeat_interleave(expand) + q.mins.repeat_interleave(expand)
