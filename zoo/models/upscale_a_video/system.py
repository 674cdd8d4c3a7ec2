"""Upscale-A-Video training systems: the video UNet (v-prediction) and the temporal VAE decoder (L1 + LPIPS + GAN).

Zhou et al., "Upscale-A-Video", CVPR 2024, Sec. 3.1 and 4.1. The official repository has inference code only; the
training facts used here come from the paper and from the SD x4 upscaler it starts from (Stability-AI/stablediffusion
``configs/stable-diffusion/x4-upscaling.yaml``, ``ldm/modules/diffusionmodules/upscaling.py``):

- **UNet** (:class:`UpscaleAVideo`, recipe ``zoo/upscale_a_video.yaml``): only the temporal layers are trained
  (the SD x4 image layers stay frozen), Adam, lr 1e-4, 8-frame clips of 320x320 GT patches (paper). Loss: MSE
  between the UNet output and the velocity ``v = sqrt(a_t) eps - sqrt(1 - a_t) z0`` (v-parameterisation) at a
  uniform random timestep, where ``z0`` is the frozen VAE encoder's latent of the GT in [-1, 1]; the LQ input is
  noise-augmented at a uniform random ``noise_level`` in [0, 350) (``ImageConcatWithNoiseAugmentation``) that is
  also the UNet's class label; text is the clip's prompt (or the null prompt, as the paper does for YouHQ),
  replaced by the null prompt with probability ``prompt_dropout`` so that classifier-free guidance works.
- **VAE decoder** (:class:`UpscaleAVideoVAEFinetune`, recipe ``configs/upscale_a_video/vae_finetune.yaml``): the
  LQ-conditioned temporal decoder (SFT + 3D convolutions) is fine-tuned with L1 + LPIPS + GAN, the encoder frozen.
  The paper decodes latents produced by its fine-tuned UNet on 100K synthetic LQ clips (generated offline); this
  system decodes the frozen encoder's latents of the GT (a reconstruction proxy, no offline generation step).

Validation, test and predict run the full sampler (:class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoPipeline`)
with :class:`~zoo.models.upscale_a_video.sampling.SamplingOptions` (use few steps for validation), through the shared
:class:`zoo.systems.base.VSRSystem` path. ``self.net_g`` is the pipeline (its state dict = the components').

Both systems are :class:`~zoo.systems.latent_diffusion.LatentDiffusionSystem`\ s: the frozen networks stay in eval
mode, and checkpoints hold only the trained layers (plus the discriminator) when built from ``pretrained``; loading
one rebuilds the frozen networks from that folder.

Without ``pretrained`` the networks are randomly initialised (sizes from ``unet`` / ``vae`` or a ``variant`` of
``spec.VARIANTS``) and :func:`~zoo.models.upscale_a_video.load.load_upscale_a_video` warns loudly: a diffusion
upscaler needs the SD x4 upscaler prior (or the released weights) to be useful.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from einops import rearrange
from torch import nn

from zoo.catalogue import ALEXNET
from zoo.diffusion.targets import training_pair
from zoo.errors import ConfigError, WeightsError
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.losses import GANLoss
from zoo.models.upscale_a_video.load import load_upscale_a_video
from zoo.models.upscale_a_video.net import is_new_parameter
from zoo.models.upscale_a_video.sampling import SamplingOptions, UpscaleAVideoPipeline
from zoo.models.upscale_a_video.spec import SPEC
from zoo.systems.base import EvalOptions
from zoo.systems.latent_diffusion import LatentDiffusionSystem

__all__ = ["UpscaleAVideo", "UpscaleAVideoVAEFinetune"]


def _build_pipeline(*, pretrained: str | None, unet: dict[str, Any] | None, vae: dict[str, Any] | None,
                    variant: str | None, use_video_vae: bool, load_text_encoder: bool,
                    raft_path: str | None) -> UpscaleAVideoPipeline:
    if variant is not None:
        if pretrained is not None:
            raise ConfigError(f"variant={variant!r} sizes random networks; pretrained ({pretrained}) fixes its own")
        sizes = SPEC.variant(variant)
        unet, vae = unet or sizes["unet"], vae or sizes["vae"]
    overrides: dict[str, object] = dict(use_video_vae=use_video_vae, load_text_encoder=load_text_encoder)
    if unet:
        overrides["unet"] = dict(unet)
    if vae:
        overrides["vae"] = dict(vae)
    if raft_path:
        overrides["raft_path"] = raft_path
    return UpscaleAVideoPipeline(load_upscale_a_video(pretrained, **overrides))


class _UpscaleAVideoCommon(LatentDiffusionSystem):
    """Shared pieces: the pipeline as ``net_g``, sampling for evaluation."""

    family = "upscale_a_video"
    cpu_hint = SPEC.cpu_hint
    net_g: UpscaleAVideoPipeline
    sampling: SamplingOptions

    def _setup_pipeline(self, pipeline: UpscaleAVideoPipeline, sampling: SamplingOptions | None) -> None:
        if pipeline.scale != self.scale:
            raise ConfigError(f"Upscale-A-Video upscales by its VAE's factor {pipeline.scale}; got scale={self.scale}")
        self.net_g = pipeline
        self.sampling = sampling or SamplingOptions()

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Sample SR for ``lq`` (b, t, 3, h, w) in [0, 1] with :attr:`sampling` -> (b, t, 3, 4h, 4w) in [0, 1], CPU."""
        return self.net_g(lq, **asdict(self.sampling))

    @torch.no_grad()
    def _encode(self, frames: torch.Tensor, *, sample: bool) -> torch.Tensor:
        """Frozen VAE encoder: (b, t, 3, H, W) in [0, 1] -> (b, t, 4, H/4, W/4) diffusion-space latents."""
        return self.net_g.vae.encode(frames * 2.0 - 1.0, sample=sample)


class UpscaleAVideo(_UpscaleAVideoCommon):
    """LightningModule training the Upscale-A-Video UNet (temporal layers by default) with the v-prediction loss.

    Args:
        pretrained: local folder: the released Upscale-A-Video weights, or a diffusers SD x4 upscaler copy (the
            prior to train from; temporal layers start at zero). None: random initialisation (loud warning).
        unet: random init / SD x4 only: :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoUNet` options (the whole
            configuration for random init, e.g. a tiny one; temporal options for SD x4).
        vae: same for :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoVAE`.
        variant: random init only: a named configuration of ``spec.VARIANTS`` (``'tiny'``) for ``unet`` / ``vae``.
        use_video_vae: load/build the LQ-conditioned temporal VAE decoder (used when sampling for evaluation).
        load_text_encoder: load the CLIP text encoder from ``pretrained`` (else zero text embeddings).
        raft_path: RAFT weights (official ``raft-things.pth``) for latent propagation during evaluation.
        train_temporal_only: train the temporal layers only (paper); False trains the whole UNet.
        lr: Adam learning rate (paper 1e-4). betas: Adam betas.
        prompt: training text when batches carry no ``'prompt'`` (``''`` = the null prompt).
        prompt_dropout: probability of replacing a clip's prompt by the null prompt (classifier-free guidance).
        max_noise_level: largest LQ augmentation level (SD x4: 350).
        noise_level_range: ``[low, high)`` of the uniform training noise level (SD x4: [0, 350)).
        sample_posterior: encode the GT with a posterior sample (LDM) rather than its mean.
        gradient_checkpointing: recompute UNet blocks in the backward pass (memory for compute).
        sampling: sampler options for validation/test/predict (choose few steps for validation).
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss) or skips the update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`. Gradient clipping is the trainer's
            ``gradient_clip_val`` (the recipe sets it).
        scale, evaluation: see :class:`zoo.systems.base.VSRSystem` (keep ``evaluation.chunk_frames``/``tile`` None:
            the sampler windows and tiles itself).

    Raises:
        ConfigError: inconsistent noise levels, scale, or nothing to train.
        WeightsError: a ``pretrained`` folder that cannot be loaded.
    """

    def __init__(
        self,
        *,
        pretrained: str | None = None,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        variant: str | None = None,
        use_video_vae: bool = False,
        load_text_encoder: bool = True,
        raft_path: str | None = None,
        train_temporal_only: bool = True,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        prompt: str = "",
        prompt_dropout: float = 0.1,
        max_noise_level: int = 350,
        noise_level_range: tuple[int, int] = (0, 350),
        sample_posterior: bool = True,
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
        low, high = noise_level_range
        if not 0 <= low < high <= max_noise_level + 1:
            raise ConfigError(f"noise_level_range {noise_level_range} must satisfy 0 <= low < high <= "
                              f"max_noise_level + 1 = {max_noise_level + 1}")
        if not 0.0 <= prompt_dropout <= 1.0:
            raise ConfigError(f"prompt_dropout must be in [0, 1]; got {prompt_dropout}")
        pipeline = _build_pipeline(pretrained=pretrained, unet=unet, vae=vae, variant=variant,
                                   use_video_vae=use_video_vae, load_text_encoder=load_text_encoder,
                                   raft_path=raft_path)
        self._setup_pipeline(pipeline, sampling)
        unet_net = self.net_g.unet
        if max_noise_level > getattr(unet_net, "max_noise_level", max_noise_level):
            raise ConfigError(f"max_noise_level {max_noise_level} exceeds the UNet's {unet_net.max_noise_level}")
        trained = self.set_trainable(lambda name, _: name.startswith("net_g.unet.") and (
            not train_temporal_only or is_new_parameter(name)))
        if not trained:
            raise ConfigError("train_temporal_only=True but the UNet has no temporal layers")
        unet_net.gradient_checkpointing = gradient_checkpointing
        unet_net.train()  # the loader returns eval-mode networks; Lightning keeps each module's mode
        # training noise schedule = the sampler's (same betas, v-prediction), as a DDPM for add_noise/get_velocity
        self.noise_scheduler = DDPMScheduler.from_config(self.net_g.scheduler.config)

    # ------------------------------------------------------------------ training
    def _prompts(self, batch: dict[str, Any], b: int) -> list[str]:
        """The batch's prompts (or ``prompt``), each replaced by ``''`` with probability ``prompt_dropout``."""
        prompts = batch.get("prompt") or [self.hparams.prompt] * b
        drop = torch.rand(b) < self.hparams.prompt_dropout
        return ["" if d else p for p, d in zip(prompts, drop.tolist())]

    def diffusion_loss(self, lq: torch.Tensor, gt: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The v-prediction MSE of one batch (see the module docstring).

        Args:
            lq: (b, t, 3, h, w) in [0, 1]. gt: (b, t, 3, 4h, 4w) in [0, 1]. prompts: b strings.

        Returns:
            Scalar float32 loss (unweighted mean over all latent elements).
        """
        b = lq.shape[0]
        latents = self._encode(gt, sample=self.hparams.sample_posterior)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), device=lq.device)
        noisy, target = training_pair(self.noise_scheduler, latents, torch.randn_like(latents), timesteps)
        low, high = self.hparams.noise_level_range
        levels = torch.randint(low, high, (b,), device=lq.device)
        lq_noisy = self.net_g.low_res_scheduler.add_noise(lq * 2.0 - 1.0, torch.randn_like(lq), levels)
        with torch.no_grad():
            text = self.net_g.encode_prompt(prompts, b)
        pred = self.net_g.unet(noisy, timesteps, lq_noisy, levels, text)
        return F.mse_loss(pred.float(), target.float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One step on ``{'lq': (b, t, 3, h, w), 'gt': (b, t, 3, 4h, 4w)[, 'prompt': list[str]]}`` in [0, 1]; None
        (the step is skipped) for a non-finite loss with ``nonfinite='skip'``."""
        lq, gt = batch["lq"], batch["gt"]
        loss = self.diffusion_loss(lq, gt, self._prompts(batch, lq.shape[0]))
        if not self.check_losses({"loss_v": loss}):
            return None
        self.log("train/loss_v", loss.detach(), prog_bar=True)
        return loss

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable UNet parameters (paper: lr 1e-4), constant learning rate."""
        return torch.optim.Adam(self.trainable_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))


class UpscaleAVideoVAEFinetune(_UpscaleAVideoCommon):
    """LightningModule fine-tuning the LQ-conditioned temporal VAE decoder with L1 + LPIPS + GAN (manual optimisation).

    Per step: GT latents from the frozen encoder, decoded with the clean LQ frames as condition in chunks of
    ``decode_chunk`` frames (the decoder's GroupNorm pools over them, as when sampling with ``vae_chunk``); generator
    loss ``l1_weight L1 + lpips_weight LPIPS + gan_weight GAN`` on the frames in [0, 1]; then one discriminator step
    (per-frame :class:`~zoo.layers.discriminators.UNetDiscriminatorSN`) on GT vs decoded frames.

    Args:
        pretrained, unet, vae, variant, load_text_encoder, raft_path: as :class:`UpscaleAVideo` (the UNet is used
            only by evaluation sampling).
        use_video_vae: the temporal decoder (must be True unless ``train_new_layers_only`` is False).
        train_new_layers_only: train only the decoder's new layers (LQ condition + 3D convolutions); False trains the
            whole decoder (and ``post_quant_conv``).
        discriminator: default ``UNetDiscriminatorSN()`` (built when ``gan_weight > 0``).
        l1_weight, lpips_weight, gan_weight: loss weights (project defaults 1, 1, 0.1; the paper gives no values).
        gan_type: :class:`zoo.losses.GANLoss` type (``'hinge'``, as LDM autoencoders; or ``'vanilla'``).
        gan_start_step: global step from which the GAN terms are used (LDM ``disc_start``).
        lpips_weights: torchvision AlexNet weights for LPIPS (default ``$TORCH_HOME/hub/checkpoints/
            alexnet-owt-7be5be79.pth``); with ``lpips_weight > 0`` they must exist.
        lr_g, lr_d, betas: Adam settings of decoder and discriminator.
        decode_chunk: frames per decoder call in training (match the sampler's ``vae_chunk``, 3).
        sample_posterior: encode with a posterior sample rather than the mean.
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss term) or skips that optimizer's update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`.
        grad_clip_norm: clip each optimizer's gradients (decoder and D separately) to this L2 norm before its step
            (None: none). Manual optimisation: ``trainer.gradient_clip_val`` is refused by Lightning, this replaces it.
        sampling, scale, evaluation: as :class:`UpscaleAVideo`.

    Raises:
        ConfigError: nothing to train, bad weights or chunk.
        WeightsError: ``lpips_weight > 0`` without the AlexNet weights; a ``pretrained`` folder that cannot be loaded.
    """

    def __init__(
        self,
        *,
        pretrained: str | None = None,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        variant: str | None = None,
        use_video_vae: bool = True,
        load_text_encoder: bool = True,
        raft_path: str | None = None,
        train_new_layers_only: bool = True,
        discriminator: nn.Module | None = None,
        l1_weight: float = 1.0,
        lpips_weight: float = 1.0,
        gan_weight: float = 0.1,
        gan_type: Literal["hinge", "vanilla", "nonsaturating"] = "hinge",
        gan_start_step: int = 0,
        lpips_weights: str | None = None,
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        decode_chunk: int = 3,
        sample_posterior: bool = True,
        sampling: SamplingOptions | None = None,
        nonfinite: Literal["stop", "skip"] = "stop",
        max_nonfinite_skips: int = 100,
        grad_clip_norm: float | None = None,
        scale: int = 4,
        evaluation: EvalOptions | None = None,
    ) -> None:
        super().__init__(scale=scale, evaluation=evaluation, nonfinite=nonfinite,
                         max_nonfinite_skips=max_nonfinite_skips, grad_clip_norm=grad_clip_norm)
        self.save_hyperparameters(ignore=["discriminator"])
        self.automatic_optimization = False
        if decode_chunk < 1:
            raise ConfigError(f"decode_chunk must be >= 1; got {decode_chunk}")
        if min(l1_weight, lpips_weight, gan_weight) < 0:
            raise ConfigError("loss weights must be >= 0")
        pipeline = _build_pipeline(pretrained=pretrained, unet=unet, vae=vae, variant=variant,
                                   use_video_vae=use_video_vae, load_text_encoder=load_text_encoder,
                                   raft_path=raft_path)
        self._setup_pipeline(pipeline, sampling)

        def decoder_layer(name: str) -> bool:
            if not name.startswith("net_g.vae."):
                return False
            if train_new_layers_only:
                return is_new_parameter(name)
            return name.startswith(("net_g.vae.decoder.", "net_g.vae.post_quant_conv."))

        if not any(decoder_layer(name) for name, _ in self.named_parameters()):
            raise ConfigError("train_new_layers_only=True but the VAE decoder has no new layers: set "
                              "use_video_vae=True (LQ-conditioned temporal decoder)")
        self.net_g.vae.train()  # the loader returns eval-mode networks; Lightning keeps each module's mode
        self.lpips = None
        if lpips_weight > 0:
            from zoo.metrics.lpips import LPIPSMetric

            metric = LPIPSMetric(weights_path=lpips_weights)
            if not metric.is_available:
                raise WeightsError(f"lpips_weight={lpips_weight} needs the LPIPS AlexNet weights at "
                                   f"{metric.weights_path}; provide them (`{ALEXNET.download_command}`) or set "
                                   "lpips_weight: 0")
            self.lpips = metric.net
        self.net_d = None
        if gan_weight > 0:
            self.net_d = discriminator if discriminator is not None else UNetDiscriminatorSN()
            self.gan_loss = GANLoss(gan_type=gan_type)
        self.set_trainable(lambda name, _: decoder_layer(name) or name.startswith("net_d."))

    # ------------------------------------------------------------------ training
    def decode(self, latents: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """Decode (b, t, 4, h, w) latents with LQ (b, t, 3, h, w) [0, 1] in ``decode_chunk`` chunks -> (b, t, 3, 4h, 4w)
        in about [0, 1] (not clamped; gradients flow to the decoder)."""
        chunk = self.hparams.decode_chunk
        lq = lq * 2.0 - 1.0
        parts = [self.net_g.vae.decode(latents[:, s:s + chunk], lq[:, s:s + chunk])
                 for s in range(0, latents.shape[1], chunk)]
        return (torch.cat(parts, dim=1) + 1.0) / 2.0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One decoder step and (with a GAN) one discriminator step on ``{'lq', 'gt'}`` in [0, 1]."""
        lq, gt = batch["lq"], batch["gt"]
        opt_g, opt_d = self.manual_optimizers()
        latents = self._encode(gt, sample=self.hparams.sample_posterior)
        sr = self.decode(latents, lq)
        sr_frames = rearrange(sr, "b t c h w -> (b t) c h w")
        gt_frames = rearrange(gt, "b t c h w -> (b t) c h w")
        losses: dict[str, torch.Tensor] = {"l1": self.hparams.l1_weight * F.l1_loss(sr, gt)}
        if self.lpips is not None:
            distance = self.lpips(sr_frames.float() * 2 - 1, gt_frames.float() * 2 - 1)
            losses["lpips"] = self.hparams.lpips_weight * distance.mean()
        use_gan = self.net_d is not None and self.global_step >= self.hparams.gan_start_step
        if use_gan:
            losses["gan_g"] = self.hparams.gan_weight * self.adversarial_loss(sr_frames)
        loss_g = self.generator_step(opt_g, losses)

        if use_gan:
            losses.update(self.discriminator_step(opt_d, gt_frames, sr_frames))
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()})
        self.log("train/loss_g", loss_g.detach(), prog_bar=True)
        return loss_g.detach()

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> Any:
        """Adam for the decoder's trainable parameters (and the discriminator), constant learning rates."""
        betas = tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.trainable_parameters("net_g."), lr=self.hparams.lr_g, betas=betas)
        if self.net_d is None:
            return opt_g
        return [opt_g, torch.optim.Adam(self.net_d.parameters(), lr=self.hparams.lr_d, betas=betas)]
