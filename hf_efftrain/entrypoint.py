"""Run a script's ``main`` so that user errors end it with one line and exit code 2, not a traceback.

Used by the ``hf-efftrain`` command and the example scripts. Under ``torchrun``/``accelerate launch`` an error
found before the processes talk to each other (a bad flag, a refused output folder) is the same on every process,
so only process 0 prints it; later errors are printed by the process that meets them. Anything that is not an
:class:`HfEfftrainError` is a bug and keeps its traceback. Example::

    if __name__ == "__main__":
        run_main(main, prog="finetune.py")
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import Any

from hf_efftrain.errors import ArgumentsError, HfEfftrainError


def run_main(main: Callable[[list[str]], Any], argv: list[str] | None = None, prog: str | None = None) -> Any:
    """Call ``main(argv)``; on :class:`HfEfftrainError` print ``<prog>: error: <message>`` and exit 2."""
    try:
        result = main(sys.argv[1:] if argv is None else argv)
    except HfEfftrainError as err:
        if _rank() == 0 or _group_open():
            message = " ".join(str(err).split())  # one line, whatever the message holds
            print(f"{prog or sys.argv[0]}: error: {message}", file=sys.stderr)
        sys.exit(2)
    close_process_group()
    return result


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def _group_open() -> bool:
    """Whether the processes already share a ``torch.distributed`` group (so an error may be this process's own)."""
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def close_process_group() -> None:
    """Destroy the ``torch.distributed`` group a run opened, so gloo's threads stop before the interpreter does.

    Left to interpreter exit, a gloo group can abort a rank (``terminate called without an active exception``)
    and turn a finished two-process run into a failed launch. Call it once the trainer is out of scope: a live
    DDP reducer still holds the group, and destroying the group under it hangs.
    """
    if "torch.distributed" not in sys.modules:
        return  # nothing imported torch.distributed, so no group is open (and `--help` stays torch-free)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()  # frees trainers kept alive only by reference cycles, and their DDP reducers
        dist.destroy_process_group()


def parse_arguments(types: tuple[type, ...], defaults: dict, argv: list[str] | None = None) -> tuple:
    """``HfArgumentParser`` over ``types`` with a script's defaults; invalid values become :class:`ArgumentsError`.

    ``TrainingArguments`` checks its values with ``ValueError`` in ``__post_init__``: turning those into one
    line (``--eval_strategy steps`` without an evaluation set, ...) is what makes a typo cheap to fix.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(types)
    parser.set_defaults(**defaults)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except HfEfftrainError:
        raise
    except ValueError as err:
        raise ArgumentsError(f"invalid arguments: {err}") from None
