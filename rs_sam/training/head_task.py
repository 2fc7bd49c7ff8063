"""What the change and segment tasks share: optimiser, schedule and small checkpoints."""

from __future__ import annotations

from typing import Any

import lightning
import torch

from rs_sam.models.head_file import CHECKPOINT_KEY, HeadMetadata


class HeadTask(lightning.LightningModule):
    """A trainable head on a (frozen) encoder ``self.model.encoder``.

    Subclasses build ``self.model`` and describe themselves in :meth:`metadata`; their
    hyperparameters include ``optimizer`` (``sgd``: Nesterov SGD, ``adamw``), ``lr``,
    ``momentum`` and ``weight_decay``. The learning rate decays polynomially (power 0.9)
    over the run's steps.
    """

    def metadata(self) -> HeadMetadata:
        raise NotImplementedError

    def has_unused_parameters(self) -> bool:
        """Whether a training step may leave some trained parameters without a gradient
        (several devices: DDP must then look for them, see ``training.distributed``)."""
        return False

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
                nesterov=hp.momentum > 0,
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches if self._trainer else 1
        scheduler = torch.optim.lr_scheduler.PolynomialLR(
            optimizer, total_iters=max(1, int(total)), power=0.9
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Small, self-describing checkpoints: a frozen encoder with official weights is
        # rebuilt from its registry name and checkpoint, so its weights are not stored.
        # (Random weights cannot be rebuilt: those runs keep them.)
        if self.encoder_rebuildable():
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not k.startswith("model.encoder.")
            }
        checkpoint[CHECKPOINT_KEY] = self.metadata().to_dict()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.encoder_rebuildable():
            # The frozen encoder's weights are not in our checkpoints (see above).
            own = self.state_dict()
            for key, value in own.items():
                if key.startswith("model.encoder.") and key not in state_dict:
                    state_dict[key] = value
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def encoder_rebuildable(self) -> bool:
        """Whether the encoder's weights can be rebuilt without the checkpoint."""
        return bool(self.hparams.freeze_encoder) and not self.model.encoder.random_weights
