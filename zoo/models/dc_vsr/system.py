"""DC-VSR training: fine-tune Stable Video Diffusion into a video super-resolution prior with the EDM loss.

Han et al., arXiv 2502.03502, Sec. 6 ("we fine-tune Image-to-Video Stable Video Diffusion"; REDS 266 clips with
Real-ESRGAN degradations). The paper gives neither the loss nor the noise distribution; ours (family README):

- **Loss.** SVD's EDM objective (Karras et al. 2022): the GT clip's latent ``z = E(2 gt - 1) s`` (posterior mode,
  scaling factor ``s``) is noised at ``sigma`` with ``ln sigma ~ N(p_mean, p_std^2)`` (default 0.7, 1.6: the shifted
  distribution used for SVD fine-tuning at high resolution), the UNet sees ``[c_in (z + sigma n), l]`` with the
  condition latent ``l = E(2 I_up - 1 + a n')`` (unscaled, SVD's convention; ``I_up`` bicubic x4 of LQ, ``a`` the
  noise-augmentation strength) and ``c_noise = 0.25 ln sigma``, and the MSE between its v-prediction and the target
  ``F* = (z - c_skip x) / c_out`` is the lambda-weighted EDM loss (:func:`zoo.diffusion.targets.edm_training_pair`).
- **Null condition.** With probability ``condition_dropout`` (default 0.1) a clip's condition latent is zeroed, so the
  model learns the unconditional branch classifier-free guidance samples with (``negative='zeros'``).
- **What trains.** ``train_modules``: ``'all'`` (the whole UNet: the paper fine-tunes SVD), ``'spatial'`` (every UNet
  parameter outside the temporal layers), ``'temporal'`` (the temporal layers: ``temporal_*`` blocks, time mixers and
  position embeddings) or ``'attention'`` (the transformer blocks). The VAE is frozen.

Clips are 14 frames (SVD's length) in the recipe ``zoo/dc_vsr.yaml``; bf16 mixed precision and gradient checkpointing
for the GPU. Checkpoints hold the trained UNet weights only when the system was built on a local SVD folder
(``pretrained``), which they name (:class:`~zoo.systems.latent_diffusion.LatentDiffusionSystem`). Validation runs the
full tiled sampler with ``sampling`` (fewer steps).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F

from zoo.diffusion.targets import edm_training_pair, sample_edm_sigmas
from zoo.diffusion.vae import diffusers_encoder
from zoo.errors import ConfigError
from zoo.models.dc_vsr.load import build_pipeline
from zoo.models.dc_vsr.sampling import DCVSRPipeline, SamplingOptions
from zoo.models.dc_vsr.spec import SPEC
from zoo.systems.base import EvalOptions
from zoo.systems.latent_diffusion import LatentDiffusionSystem

__all__ = ["TRAIN_MODULES", "DCVSR"]

_TEMPORAL = ("temporal_", "time_mixer", "time_pos_embed")
#: ``train_modules`` -> which UNet parameters (names inside ``unet``) train.
TRAIN_MODULES = {
    "all": lambda name: True,
    "spatial": lambda name: not any(part in name for part in _TEMPORAL),
    "temporal": lambda name: any(part in name for part in _TEMPORAL),
    "attention": lambda name: ".attentions." in f".{name}",
}


class DCVSR(LatentDiffusionSystem):
    """LightningModule fine-tuning DC-VSR's UNet (module docstring).

    Args:
        pretrained: a local Stable Video Diffusion img2vid folder (VAE, scheduler, and the starting UNet unless
            ``unet_weights``). None: random networks (loud warning).
        unet_weights: the released DC-VSR ``unet_ema`` folder to start from (fine-tune further), or None.
        variant: random networks only: a name of ``spec.VARIANTS`` (``'tiny'``).
        unet, vae: random networks only: diffusers options over SVD's.
        train_modules: ``'all'``, ``'spatial'``, ``'temporal'`` or ``'attention'`` (:data:`TRAIN_MODULES`).
        propagation, conditioning: sampler options (:class:`~zoo.models.dc_vsr.sampling.DCVSRPipeline`); the
            conditioning's time ids and noise augmentation are used in training too.
        p_mean, p_std: training noise distribution, ``ln sigma ~ N(p_mean, p_std^2)``.
        condition_dropout: probability of the zero (null) condition per clip.
        lr, betas, weight_decay: AdamW.
        gradient_checkpointing: recompute the UNet's blocks in the backward pass.
        sampling: sampler options of validation / test / predict.
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss) or skips the update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`. Gradient clipping is the trainer's
            ``gradient_clip_val`` (the recipe sets it).
        scale, evaluation: :class:`zoo.systems.base.VSRSystem` (keep ``evaluation.chunk_frames`` / ``tile`` None: the
            sampler tiles itself).

    Raises:
        ConfigError: unknown ``train_modules``, bad probabilities or options.
        WeightsError: unusable folders.
    """

    family = "dc_vsr"
    cpu_hint = SPEC.cpu_hint
    net_g: DCVSRPipeline

    def __init__(
        self,
        *,
        pretrained: str | None = None,
        unet_weights: str | None = None,
        variant: str | None = None,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        train_modules: Literal["all", "spatial", "temporal", "attention"] = "all",
        propagation: dict[str, Any] | None = None,
        conditioning: dict[str, Any] | None = None,
        p_mean: float = 0.7,
        p_std: float = 1.6,
        condition_dropout: float = 0.1,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.01,
        gradient_checkpointing: bool = False,
        sampling: SamplingOptions | None = None,
        nonfinite: Literal["stop", "skip"] = "stop",
        max_nonfinite_skips: int = 100,
        scale: int = 4,
        evaluation: EvalOptions | None = None,
    ) -> None:
        super().__init__(scale=scale, evaluation=evaluation, nonfinite=nonfinite,
                         max_nonfinite_skips=max_nonfinite_skips)
        self.save_hyperparameters()
        if train_modules not in TRAIN_MODULES:
            raise ConfigError(f"train_modules must be one of {list(TRAIN_MODULES)}; got {train_modules!r}")
        if not 0.0 <= condition_dropout < 1.0:
            raise ConfigError(f"condition_dropout must be in [0, 1); got {condition_dropout}")
        if scale != 4:
            raise ConfigError(f"DC-VSR upscales by 4; got scale={scale}")
        self.net_g = build_pipeline(pretrained, unet_weights=unet_weights, variant=variant, unet=unet, vae=vae,
                                    propagation=propagation, conditioning=conditioning)
        self.sampling = sampling or SamplingOptions()
        choose = TRAIN_MODULES[train_modules]
        trained = self.set_trainable(lambda name, _: name.startswith("net_g.unet.")
                                     and choose(name.removeprefix("net_g.unet.")))
        if not trained:
            raise ConfigError(f"train_modules={train_modules!r} selects no UNet parameter")
        if gradient_checkpointing:
            self.net_g.unet.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ inference
    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """The full sampler on ``lq`` (b, t, 3, h, w) [0, 1] with ``sampling`` -> (b, t, 3, 4h, 4w) CPU [0, 1]."""
        return self.net_g(lq, **asdict(self.sampling))

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _latents(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, l, up)``: the GT latent (diffusion space), the condition latent (unscaled; with SVD's noise
        augmentation), both (b, t, c, h, w), and the bicubic-upsampled LQ (b, t, 3, 4h, 4w)."""
        up = self.net_g.upsample(lq.float())
        cond = self.net_g.encode_condition(self.net_g.condition_frames(up, torch.randn_like(up)))
        return diffusers_encoder(self.net_g.vae)(gt.float() * 2.0 - 1.0), cond, up

    def diffusion_loss(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The EDM loss on one batch: ``lq`` (b, t, 3, h, w), ``gt`` (b, t, 3, 4h, 4w), both in [0, 1] (scalar
        float32)."""
        z, cond, up = self._latents(lq, gt)
        b = z.shape[0]
        keep = (torch.rand(b, device=z.device) >= self.hparams.condition_dropout).to(cond.dtype)
        cond = cond * keep.view(b, 1, 1, 1, 1)
        sigmas = sample_edm_sigmas(b, p_mean=self.hparams.p_mean, p_std=self.hparams.p_std, device=z.device)
        pair = edm_training_pair(z, torch.randn_like(z), sigmas,
                                 prediction_type=self.net_g.scheduler.config.prediction_type)
        image_embeds = self.net_g.image_embeddings(up).to(z.device)
        pred = self.net_g.unet_prediction(pair["model_input"], pair["timestep"], cond=cond,
                                          image_embeds=image_embeds * keep.view(b, 1, 1),
                                          added_time_ids=self.net_g.added_time_ids(b).to(z.device))
        return F.mse_loss(pred.float(), pair["target"].float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One step on ``{'lq': (b, t, 3, h, w), 'gt': (b, t, 3, 4h, 4w)}`` in [0, 1]; None (the step is skipped) for
        a non-finite loss with ``nonfinite='skip'``."""
        loss = self.diffusion_loss(batch["lq"], batch["gt"])
        if not self.check_losses({"loss_edm": loss}):
            return None
        self.log("train/loss_edm", loss.detach(), prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the trained UNet parameters, constant learning rate."""
        return torch.optim.AdamW(self.trainable_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                 weight_decay=self.hparams.weight_decay)
