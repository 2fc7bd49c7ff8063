"""What the training tasks need to run on several devices (Lightning's DDP strategies).

Under data parallel training every rank runs the whole ``rs-sam train`` command (Lightning's
``ddp`` starts the other ranks by running the same command again; ``torchrun`` and SLURM
start them all), so:

* output meant for the user (summaries, the final report) is written by global rank 0 only:
  :func:`is_rank_zero` says which process that is, even before the Trainer exists;
* every rank must run backward on every step, or the others wait forever for its gradients:
  :func:`zero_loss` is what a task returns instead of skipping a step;
* validation scores a task accumulates itself are summed over the ranks with
  :func:`sum_over_ranks`, so every rank logs (and picks ``best.ckpt`` by) the same value;
* tasks whose trained parameters are not all used on every step (prompt-encoder parts that
  one kind of prompt never reaches) need DDP's search for unused parameters:
  :func:`allow_unused_parameters`.

On one device every function here is a no-op.
"""

from __future__ import annotations

from typing import Any

import lightning
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor


def is_rank_zero(trainer: lightning.Trainer | None = None) -> bool:
    """Whether this process is global rank 0 (the one that reports and writes files).

    Before a Trainer exists (or without one) this is what Lightning reads from the launcher's
    environment (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``), as its ``rank_zero_only`` does.
    """
    if trainer is not None:
        return bool(trainer.is_global_zero)
    return getattr(rank_zero_only, "rank", 0) == 0


def world_size(module: lightning.LightningModule) -> int:
    """The number of ranks training ``module`` (1 without a Trainer)."""
    trainer = module._trainer  # None when the module is used on its own (tests, export)
    return 1 if trainer is None else int(trainer.world_size)


def sum_over_ranks(module: lightning.LightningModule, values: Tensor) -> Tensor:
    """``values`` summed element-wise over all ranks (the same tensor back on one device).

    Every rank must call this with a tensor of the same shape and dtype; it is moved to the
    module's device first (NCCL reduces only GPU tensors).
    """
    if world_size(module) == 1:
        return values
    reduced = module.trainer.strategy.reduce(
        values.detach().to(module.device).clone(), reduce_op="sum"
    )
    return reduced.to(values.device)


def zero_loss(module: lightning.LightningModule) -> Tensor:
    """A loss of 0 that reaches every trained parameter of ``module``.

    Returned by a training step that has nothing to learn from its batch when several ranks
    train: its backward gives zero gradients, so DDP's gradient averaging completes on every
    rank (a step that returned None would leave the other ranks waiting).
    """
    total = torch.zeros((), device=module.device)
    for parameter in module.parameters():
        if parameter.requires_grad:
            total = total + parameter.sum() * 0.0
    return total


def allow_unused_parameters(trainer: lightning.Trainer) -> bool:
    """Let a DDP strategy chosen by name (``ddp``, or ``auto`` on several devices) accept
    trained parameters that a step does not use.

    DDP fails such a step unless it searches for unused parameters; the strategy names
    ending in ``_find_unused_parameters_true``/``_false`` say so explicitly and are left
    alone. Returns whether the search was switched on.
    """
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    options: Any = getattr(strategy, "_ddp_kwargs", None)
    if not isinstance(strategy, DDPStrategy) or not isinstance(options, dict):
        return False
    if "find_unused_parameters" in options:
        return bool(options["find_unused_parameters"])
    options["find_unused_parameters"] = True
    return True
