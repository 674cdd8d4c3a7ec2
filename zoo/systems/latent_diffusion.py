"""The training base of the latent-diffusion families: frozen priors, trainable adapters, small checkpoints.

A latent-diffusion upscaler is mostly a frozen pretrained prior (UNet, VAE, text or image encoder, flow network)
plus the few layers a paper trains (temporal layers, adapters, a decoder fine-tune). :class:`LatentDiffusionSystem`
(a :class:`~zoo.systems.base.VSRSystem`) handles what follows from that once for every such family:

- **What trains.** :meth:`~LatentDiffusionSystem.set_trainable` freezes every parameter except those a predicate
  chooses and records their names; :meth:`~LatentDiffusionSystem.trainable_parameters` is what the optimiser gets.
- **Frozen modules stay in eval mode.** Lightning's ``train()`` switches every sub-module to training mode; any
  sub-module whose parameters are all frozen is switched back (dropout off, batch statistics fixed), descending
  only into modules that hold trainable parameters.
- **Checkpoints hold the trained weights only** when the system was built from a local ``pretrained`` folder: the
  frozen parts are rebuilt from that folder when the checkpoint is loaded (the system's constructor loads them; the
  checkpoint's ``hyper_parameters`` keep the path). Kept: the parameters :meth:`~LatentDiffusionSystem.set_trainable`
  chose (whatever their ``requires_grad`` is at that moment: GAN steps toggle the discriminator's), the buffers of the
  modules that own them (e.g. spectral-norm vectors), and every tensor of sub-modules listed in ``_always_saved``. A system built
  without ``pretrained`` (random initialisation, smoke runs) has nothing to rebuild from, so its checkpoints keep
  everything. Loading checks the keys both ways (a checkpoint missing a trained layer is refused).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.errors import WeightsError
from zoo.systems.base import VSRSystem
from zoo.weights import CHECKPOINT_INFO, checkpoint_info

__all__ = ["LatentDiffusionSystem", "eval_frozen_modules"]


def eval_frozen_modules(module: nn.Module) -> None:
    """Put every sub-module of ``module`` whose parameters are all frozen into eval mode (recursively, top-down)."""
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        eval_frozen_modules(child)


class LatentDiffusionSystem(VSRSystem):
    """Base LightningModule of the latent-diffusion families (see the module docstring).

    Subclasses build their networks in ``__init__`` (from ``pretrained``, a local folder, recorded by
    ``save_hyperparameters``), call :meth:`set_trainable`, and implement ``training_step`` and
    ``configure_optimizers`` (over :meth:`trainable_parameters`).

    Attributes:
        _always_saved: names of sub-modules saved in full in every checkpoint (e.g. a discriminator trained from
            scratch whose parameters are all trainable anyway, listed for clarity).
    """

    _always_saved: tuple[str, ...] = ()

    def __init__(self, *, scale: int = 4, evaluation: Any = None, nonfinite: str = "stop",
                 max_nonfinite_skips: int = 100, grad_clip_norm: float | None = None) -> None:
        super().__init__(scale=scale, evaluation=evaluation, nonfinite=nonfinite,
                         max_nonfinite_skips=max_nonfinite_skips, grad_clip_norm=grad_clip_norm)
        self._trained: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ what trains
    def set_trainable(self, predicate: Callable[[str, nn.Parameter], bool]) -> list[str]:
        """Freeze every parameter, then unfreeze those for which ``predicate(name, parameter)`` is True.

        Args:
            predicate: called with the parameter's full name in this module (``net_g.unet.down_temporal...``).

        Returns:
            The trained parameter names (sorted).
        """
        trained = []
        for name, param in self.named_parameters():
            keep = bool(predicate(name, param))
            param.requires_grad_(keep)
            if keep:
                trained.append(name)
        self._trained = frozenset(trained)
        return sorted(trained)

    def trainable_parameters(self, prefix: str = "") -> list[nn.Parameter]:
        """The parameters that train (optionally only those whose name starts with ``prefix``)."""
        return [p for name, p in self.named_parameters() if p.requires_grad and name.startswith(prefix)]

    def train(self, mode: bool = True) -> LatentDiffusionSystem:
        """Lightning's ``train()``, then frozen sub-modules back to eval mode (:func:`eval_frozen_modules`)."""
        super().train(mode)
        if mode:
            eval_frozen_modules(self)
        return self

    # ------------------------------------------------------------------ checkpoints
    @property
    def pretrained_path(self) -> str | None:
        """The local folder the frozen parts come from (``hparams.pretrained``), or None."""
        return self.hparams.get("pretrained") if hasattr(self, "hparams") else None

    def saved_keys(self) -> set[str]:
        """State-dict keys a checkpoint keeps (module docstring)."""
        state_keys = set(self.state_dict())
        if not self.pretrained_path:
            return state_keys
        keys: set[str] = set()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            if any(module_name == n or module_name.startswith(f"{n}.") for n in self._always_saved):
                keys.update(f"{prefix}{k}" for k in module.state_dict(keep_vars=True))
                continue
            trained = [k for k, _ in module.named_parameters(recurse=False) if f"{prefix}{k}" in self._trained]
            if trained:
                keys.update(f"{prefix}{k}" for k in trained)
                keys.update(f"{prefix}{k}" for k, _ in module.named_buffers(recurse=False))
        return keys & state_keys

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only :meth:`saved_keys` in ``checkpoint['state_dict']`` and say so under ``checkpoint['vsrzoo']``."""
        super().on_save_checkpoint(checkpoint)
        keep = self.saved_keys()
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k: v for k, v in state.items() if k in keep}
        info = checkpoint.setdefault(CHECKPOINT_INFO, {})
        info["weights"] = "trained" if self.pretrained_path else "all"
        info["pretrained"] = self.pretrained_path

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check a checkpoint's keys against this system before Lightning loads it, and complete a trained-only
        checkpoint (in memory) with this system's frozen tensors, which its constructor loaded from ``pretrained``;
        Lightning then loads it strictly.

        Raises:
            WeightsError: keys this system does not have, trained keys the checkpoint lacks, or (for a full
                checkpoint) any missing key.
        """
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        own = set(self.state_dict())
        info = checkpoint_info(checkpoint)
        trained_only = info.get("weights") == "trained"
        required = self.saved_keys() if trained_only else own
        unexpected = sorted(set(state) - own)
        missing = sorted(required - set(state))
        if unexpected or missing:
            raise WeightsError(f"checkpoint does not match {type(self).__name__}: {len(missing)} missing "
                               f"{missing[:6]}, {len(unexpected)} unexpected {unexpected[:6]}")
        if trained_only:
            for key, value in self.state_dict().items():
                state.setdefault(key, value)

    @torch.no_grad()
    def count_parameters(self) -> dict[str, int]:
        """``{'trained': ..., 'frozen': ...}`` parameter counts."""
        trained = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trained": trained, "frozen": total - trained}
