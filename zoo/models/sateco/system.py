"""SATeCo training: one LightningModule, four stages, each training its own modules on a frozen Stable Diffusion.

Chen et al., CVPR 2024, Sec. 3.4 (training) and Sec. 4.1 (AdamW, lr 5e-5, 6-frame clips; BI x4 on REDS / Vimeo-90K).
The stages run in order, each starting from the previous one's checkpoint (``init_from``):

1. ``stage='upscaler'`` (``configs/sateco/stage1_upscaler.yaml``): the video upscaler, Charbonnier(X_u, GT).
2. ``stage='unet'`` (``zoo/sateco.yaml``): the UNet's SFA/TFA adapters and the latent encoder E_z with the diffusion
   loss: GT latent ``z_gt = E(GT)`` noised at a uniform timestep (``training_pair``: the scheduler's
   ``add_noise``, epsilon target for SD 2.x-base), the frozen UNet guided by ``E_z(E(X_u))`` predicts it; MSE.
3. ``stage='vae'`` (``configs/sateco/stage3_vae.yaml``): the VAE decoder's SFA/TFA adapters, Charbonnier(decoded, GT)
   with the decoder guided by the VAE encoder's features of X_u.
4. ``stage='refiner'`` (``configs/sateco/stage4_refiner.yaml``): the refiner, Charbonnier(X_H, GT).

Everything not trained by the stage is frozen (bit-identical after its steps). The latents decoded in stages 3-4: the
paper decodes the UNet's denoised latents; running the sampler at every step is too costly, so by default
(``decoder_latents='denoised'``) the GT latent is noised at a timestep drawn from the sampler's range (``strength``
of the schedule) and the guided UNet's one-step clean estimate x0 is decoded, which has the blur and artefacts of a
denoised latent; ``'gt'`` decodes the GT latent itself (a reconstruction proxy).

Checkpoints keep every SATeCo module (upscaler, latent encoder, adapters, refiner: what the stages train) and name
the base folder (``pretrained``); the frozen base is rebuilt from it (:class:`~zoo.systems.latent_diffusion.
LatentDiffusionSystem`). Validation runs the stage's output: X_u for stage 1, the full sampler
(:class:`~zoo.models.sateco.sampling.SATeCoPipeline` with ``sampling``) for the others.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from zoo.diffusion.sampler import split_prediction
from zoo.diffusion.targets import training_pair
from zoo.errors import ConfigError, WeightsError
from zoo.losses import CharbonnierLoss
from zoo.models.sateco.load import build_pipeline
from zoo.models.sateco.sampling import SamplingOptions, SATeCoPipeline
from zoo.models.sateco.spec import SPEC
from zoo.systems.base import EvalOptions
from zoo.systems.latent_diffusion import LatentDiffusionSystem
from zoo.weights import read_checkpoint

__all__ = ["STAGES", "SATeCo"]

#: Stage -> the pipeline sub-modules it trains.
STAGES: dict[str, tuple[str, ...]] = {
    "upscaler": ("upscaler",),
    "unet": ("unet_adapters", "latent_encoder"),
    "vae": ("vae_adapters",),
    "refiner": ("refiner",),
}
_MODULES = ("upscaler", "latent_encoder", "unet_adapters", "vae_adapters", "refiner")


class SATeCo(LatentDiffusionSystem):
    """LightningModule of SATeCo's four training stages (module docstring).

    Args:
        stage: ``'upscaler'``, ``'unet'``, ``'vae'`` or ``'refiner'``.
        pretrained: a local Stable Diffusion 2.x-base folder (frozen base). None: random base (loud warning).
        variant: random base only: a name of ``spec.VARIANTS`` (``'tiny'``) for the base and module sizes.
        unet, vae: random base only: diffusers options over SD 2.1-base's.
        load_text_encoder: load the CLIP text encoder of ``pretrained`` (else zero text tokens).
        upscaler, latent_encoder, adapters, refiner: module options (:class:`~zoo.models.sateco.sampling.
            SATeCoPipeline`); ``upscaler: {num_blocks: 0}`` is the PixelShuffle-only ablation, ``adapters:
            {use_sfa: false}`` / ``{use_tfa: false}`` the SFA / TFA ablations, ``refiner: {weight: w}``.
        vae_adapters: adapters in the VAE decoder (False: the UNet-only ablation; then there is no stage 3).
        init_from: the previous stage's checkpoint: its SATeCo modules (and, for a random base, the base) are loaded.
        lr, betas, weight_decay: AdamW (paper: lr 5e-5).
        charbonnier_eps: of the pixel losses.
        prompt: training text (``''``: the null prompt).
        decoder_latents: stages 3-4: ``'denoised'`` or ``'gt'`` (module docstring).
        sample_posterior: encode GT / X_u with a posterior sample rather than the mean.
        gradient_checkpointing: recompute the UNet's / VAE decoder's blocks in the backward pass.
        sampling: sampler options of validation / test / predict (use few steps for validation).
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss) or skips the update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`. Gradient clipping is the trainer's
            ``gradient_clip_val`` (the recipe sets it).
        scale, evaluation: :class:`zoo.systems.base.VSRSystem` (keep ``evaluation.chunk_frames`` / ``tile`` None: the
            sampler windows and tiles itself).

    Raises:
        ConfigError: unknown stage, stage 3 without VAE adapters, bad options.
        WeightsError: an unusable ``pretrained`` folder or ``init_from`` checkpoint.
    """

    family = "sateco"
    cpu_hint = SPEC.cpu_hint
    _always_saved = tuple(f"net_g.{name}" for name in _MODULES)
    net_g: SATeCoPipeline

    def __init__(
        self,
        *,
        stage: Literal["upscaler", "unet", "vae", "refiner"] = "unet",
        pretrained: str | None = None,
        variant: str | None = None,
        unet: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        load_text_encoder: bool = True,
        upscaler: dict[str, Any] | None = None,
        latent_encoder: dict[str, Any] | None = None,
        adapters: dict[str, Any] | None = None,
        vae_adapters: bool = True,
        refiner: dict[str, Any] | None = None,
        init_from: str | None = None,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.01,
        charbonnier_eps: float = 1e-3,
        prompt: str = "",
        decoder_latents: Literal["denoised", "gt"] = "denoised",
        sample_posterior: bool = False,
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
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {list(STAGES)}; got {stage!r}")
        if stage == "vae" and not vae_adapters:
            raise ConfigError("stage 'vae' trains the VAE decoder's adapters, but vae_adapters is false (the UNet-only "
                              "ablation has no stage 3: go from stage 'unet' to stage 'refiner')")
        if decoder_latents not in ("denoised", "gt"):
            raise ConfigError(f"decoder_latents must be 'denoised' or 'gt'; got {decoder_latents!r}")
        self.net_g = build_pipeline(pretrained, variant=variant, unet=unet, vae=vae,
                                    load_text_encoder=load_text_encoder, upscaler=upscaler,
                                    latent_encoder=latent_encoder, adapters=adapters, vae_adapters=vae_adapters,
                                    refiner=refiner)
        if self.net_g.scale != scale:
            raise ConfigError(f"SATeCo upscales by {self.net_g.scale}; got scale={scale}")
        self.sampling = sampling or SamplingOptions()
        if init_from:
            self._init_from(Path(init_from))
        prefixes = tuple(f"net_g.{name}." for name in STAGES[stage])
        self.set_trainable(lambda name, _: name.startswith(prefixes))
        if gradient_checkpointing:
            self.net_g.unet.enable_gradient_checkpointing()
            self.net_g.vae.enable_gradient_checkpointing()
        if stage != "upscaler" and not init_from:
            warnings.warn(f"SATeCo stage {stage!r} without init_from: the video upscaler is UNTRAINED (random); train "
                          "stage 1 first and pass its checkpoint as init_from (smoke runs only otherwise)",
                          stacklevel=2)
        self.noise_scheduler = DDPMScheduler.from_config(self.net_g.scheduler.config)
        self.charbonnier = CharbonnierLoss(eps=charbonnier_eps)

    # ------------------------------------------------------------------ stage chaining
    def _init_from(self, path: Path) -> None:
        """Load a previous stage's checkpoint: its SATeCo modules, and the base too when it holds one (random base).

        Raises:
            WeightsError: a missing file, not a SATeCo checkpoint, or tensors that do not fit this system.
        """
        if not path.is_file():
            raise WeightsError(f"init_from checkpoint not found: {path}")
        ckpt = read_checkpoint(path, family="sateco")
        state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict) or not any(k.startswith("net_g.upscaler.") for k in state):
            raise WeightsError(f"{path} is not a SATeCo checkpoint (no net_g.upscaler.* weights)")
        own = self.state_dict()
        unexpected = sorted(k for k in state if k not in own)
        mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
        if unexpected or mismatched:
            raise WeightsError(f"{path} does not fit this SATeCo system (different module options?): "
                               f"{len(unexpected)} unknown keys {unexpected[:4]}, {len(mismatched)} mis-shaped "
                               f"{mismatched[:4]}")
        missing = sorted(k for k in own if k.startswith(self._always_saved) and k not in state)
        if missing:
            raise WeightsError(f"{path} lacks SATeCo modules of this system: {missing[:4]}")
        self.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------ inference
    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Validation output for ``lq`` (b, t, 3, h, w) [0, 1]: X_u for stage 1, else the full sampler (CPU, [0, 1])."""
        if self.hparams.stage == "upscaler":
            return self.net_g.upscaler(lq).clamp(0.0, 1.0)
        return self.net_g(lq, **asdict(self.sampling))

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frozen VAE encoder: (b, t, 3, H, W) in [0, 1] -> (b, t, c, H/8, W/8) diffusion-space latents."""
        from zoo.diffusion.vae import diffusers_encoder

        return diffusers_encoder(self.net_g.vae, sample=self.hparams.sample_posterior)(frames * 2.0 - 1.0)

    def _text(self, b: int) -> torch.Tensor:
        with torch.no_grad():
            return self.net_g.encode_prompt(self.hparams.prompt, b)

    def _decoder_latents(self, z_gt: torch.Tensor, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The latents stages 3-4 decode (module docstring)."""
        if self.hparams.decoder_latents == "gt":
            return z_gt
        high = max(1, int(round(self.sampling.strength * self.noise_scheduler.config.num_train_timesteps)))
        timestep = int(torch.randint(0, high, ()))
        with torch.no_grad():
            t = torch.full((z_gt.shape[0],), timestep, dtype=torch.long, device=z_gt.device)
            noisy = self.noise_scheduler.add_noise(z_gt, torch.randn_like(z_gt), t)
            out = self.net_g.unet_prediction(noisy, t, z=z, text=text)
            x0, _ = split_prediction(self.noise_scheduler, out.float(), noisy.float(), timestep)
        return x0.float()

    def stage_loss(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The stage's loss on one batch: ``lq`` (b, t, 3, h, w), ``gt`` (b, t, 3, 4h, 4w), both in [0, 1].

        Returns:
            Scalar float32.
        """
        stage = self.hparams.stage
        if stage == "upscaler":
            return self.charbonnier(self.net_g.upscaler(lq).float(), gt.float())
        with torch.no_grad():
            x_u = self.net_g.upscaler(lq).clamp(0.0, 1.0)
        z, z_gt = self._encode(x_u), self._encode(gt)
        text = self._text(lq.shape[0])
        if stage == "unet":
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (lq.shape[0],),
                                      device=lq.device)
            noisy, target = training_pair(self.noise_scheduler, z_gt, torch.randn_like(z_gt), timesteps)
            pred = self.net_g.unet_prediction(noisy, timesteps, z=z, text=text)
            return F.mse_loss(pred.float(), target.float())
        latents = self._decoder_latents(z_gt, z, text)
        if stage == "vae":
            decoded = self.net_g.decode_guided(latents, x_u * 2.0 - 1.0)
            return self.charbonnier((decoded.float() + 1.0) / 2.0, gt.float())
        with torch.no_grad():
            x_d = ((self.net_g.decode_guided(latents, x_u * 2.0 - 1.0) + 1.0) / 2.0).clamp(0.0, 1.0)
        return self.charbonnier(self.net_g.refiner(x_u, x_d).float(), gt.float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One step of the stage on ``{'lq': (b, t, 3, h, w), 'gt': (b, t, 3, 4h, 4w)}`` in [0, 1]; None (the step is
        skipped) for a non-finite loss with ``nonfinite='skip'``."""
        loss = self.stage_loss(batch["lq"], batch["gt"])
        name = f"loss_{self.hparams.stage}"
        if not self.check_losses({name: loss}):
            return None
        self.log(f"train/{name}", loss.detach(), prog_bar=True)
        return loss

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the stage's parameters (paper: lr 5e-5), constant learning rate."""
        return torch.optim.AdamW(self.trainable_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                 weight_decay=self.hparams.weight_decay)
