"""VideoGigaGAN training system (Xu et al., "VideoGigaGAN: Towards Detail-rich Video Super-Resolution", ECCV 2024).

One LightningModule with manual optimisation: per step one generator update, the generator EMA update, and one
discriminator update (with a lazy R1 penalty). The paper has no official code. The optimiser and learning rate
are from its supplementary material; the loss weights are those secondary summaries of the paper give (we could not
check them in the paper's text, see the family README):

* generator: ``10 * Charbonnier(sr, gt) + 5 * LPIPS(sr, gt) + 0.05 * non-saturating GAN``, every term computed per
  frame and averaged over frames (all frames have the same size, so the mean over ``b t c h w`` is the mean of the
  per-frame means);
* discriminator: :class:`~zoo.layers.discriminators.VideoDiscriminator` (inflated to see time, one logit per
  frame), non-saturating loss ``softplus(-D(gt)) + softplus(D(sr))`` averaged over frames, plus the R1 penalty
  (Mescheder et al., ICML 2018) with ``gamma = 0.2048``: ``gamma / 2 * E[||grad_x D(x)||^2]`` on real clips. It is
  applied lazily (StyleGAN2, Karras et al. CVPR 2020, Appendix B "lazy regularization"): every ``r1_interval``-th
  discriminator step, multiplied by ``r1_interval``;
* Adam, fixed learning rate 5e-5 (paper, supplementary), for both networks (our choice for D); betas (0, 0.99) as
  StyleGAN2/GigaGAN (our choice: the paper states only the learning rate); generator EMA (decay 0.999, our choice), used for validation and export.

Long clips. The paper computes the flow-guided propagation features of the whole video first and then runs the
U-Net chunk by chunk. :meth:`VideoGigaGAN.forward` (what the base system's chunked path calls per chunk) runs
propagation + U-Net on the chunk it is given; :func:`upscale_with_whole_clip_propagation` (used by validation/test
when ``evaluation.chunk_frames`` is set and ``whole_clip_propagation`` is on) propagates over the whole clip once and
then upsamples chunk by chunk with the same overlap cross-fade weights as :mod:`zoo.inference`. ``vsrzoo upscale``
streams through :func:`zoo.inference.upscale_video`, which gives each chunk its own propagation (cross-faded over
``overlap`` frames): its memory stays bounded, at the cost of the paper's whole-video propagation.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
from einops import rearrange
from torch import nn

from zoo.catalogue import ALEXNET
from zoo.config import describe_module
from zoo.errors import ConfigError, InputError, WeightsError
from zoo.diffusion.tiles import TileAccumulator, plan_windows, window_weights
from zoo.losses import CharbonnierLoss, GANLoss
from zoo.layers.discriminators import VideoDiscriminator
from zoo.models.videogigagan.net import VideoGigaGANNet
from zoo.models.videogigagan.spec import SPEC
from zoo.systems.base import EvalOptions, VSRSystem

__all__ = ["VideoGigaGAN", "upscale_with_whole_clip_propagation"]


@torch.no_grad()
def upscale_with_whole_clip_propagation(
    net: VideoGigaGANNet, lq: torch.Tensor, *, chunk_frames: int | None = None, overlap: int = 0
) -> torch.Tensor:
    """The paper's long-clip inference: propagate over the whole clip once, then run the U-Net chunk by chunk.

    Chunks are planned by :func:`zoo.diffusion.tiles.plan_windows` and their outputs cross-faded over shared frames
    with :func:`zoo.diffusion.tiles.window_weights` (the weights ``vsrzoo upscale`` uses), so with
    ``temporal_attention=False`` (a per-frame U-Net) the result equals ``net(lq)`` up to float rounding, whatever the
    chunking. Memory: the
    propagated features of the whole clip, ``(b, t, 2 * propagation_channels, h, w)`` float32, are held at once.

    Args:
        net: a :class:`VideoGigaGANNet` (any mode; call ``.eval()`` first for inference).
        lq: ``(b, t, 3, h, w)`` RGB float in [0, 1].
        chunk_frames: frames per U-Net chunk (None: the whole clip in one pass).
        overlap: frames shared by consecutive chunks (``0 <= overlap < chunk_frames``).

    Returns:
        sr ``(b, t, 3, scale h, scale w)`` float on ``lq``'s device, not clamped.

    Raises:
        InputError: ``lq`` is not laid out as (b, t, 3, h, w).
        ConfigError: bad ``chunk_frames`` / ``overlap``.
    """
    if not isinstance(lq, torch.Tensor) or lq.ndim != 5:
        shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise InputError(f"lq must be a video batch (b, t, 3, h, w) in [0, 1]; got {shape}")
    if chunk_frames is not None and (chunk_frames < 1 or not 0 <= overlap < chunk_frames):
        raise ConfigError(f"need chunk_frames >= 1 and 0 <= overlap < chunk_frames; got {chunk_frames}, {overlap}")
    feats = net.propagate(lq) if net.propagation is not None else None
    plan = plan_windows(lq.shape[1], chunk_frames, overlap)
    if len(plan) == 1:
        return net.upsample(lq, feats)
    blend: TileAccumulator | None = None
    for index, (start, end) in enumerate(plan):
        out = net.upsample(lq[:, start:end], None if feats is None else feats[:, start:end])
        if blend is None:
            blend = TileAccumulator((out.shape[0], lq.shape[1], *out.shape[2:]), axes=(1,), dtype=out.dtype,
                                    device=out.device)
        blend.add(((start, end),), out, (window_weights(plan, index),))
    return blend.result()


class VideoGigaGAN(VSRSystem):
    """LightningModule training :class:`VideoGigaGANNet` with the paper's losses (module docstring).

    Args:
        net: the generator; default ``VideoGigaGANNet(scale=scale)`` (all four switches on). Its ``scale`` must equal
            ``scale``.
        discriminator: built only when ``gan_weight > 0``; default ``VideoDiscriminator()`` (temporal).
        charbonnier_weight: weight of the Charbonnier loss (paper: 10; ``eps = 1e-3`` on the [0, 1] scale).
        lpips_weight: weight of the LPIPS (AlexNet, v0.1) loss (paper: 5). With a value > 0 the AlexNet trunk
            ``alexnet-owt-7be5be79.pth`` must be present (``lpips_weights`` or ``$TORCH_HOME/hub/checkpoints``) when
            fitting starts (:meth:`setup`); set it to 0 to train without LPIPS. Validation/test/predict never need it.
        lpips_weights: path of torchvision's AlexNet state dict for LPIPS (None: the ``$TORCH_HOME`` location).
        gan_weight: weight of the generator's non-saturating GAN loss (paper: 0.05; 0 disables D and R1).
        r1_weight: R1 ``gamma`` (paper: 0.2048); the penalty is ``gamma / 2 * E||grad D||^2`` with the gradient taken
            with respect to the discriminator's [-1, 1] input (StyleGAN convention), per frame then averaged.
        r1_interval: apply R1 every this many discriminator steps, scaled by it (lazy regularisation; 1: every step).
        lr_g, lr_d: Adam learning rates (paper: 5e-5).
        betas: Adam betas of both optimisers.
        ema_decay: decay of the generator EMA (``None`` disables it).
        whole_clip_propagation: in validation/test/predict with ``evaluation.chunk_frames`` set (and no tiling),
            propagate over the whole clip before chunking (:func:`upscale_with_whole_clip_propagation`); False gives
            each chunk its own propagation, like ``vsrzoo upscale``.
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss term) or skips that optimizer's update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`.
        grad_clip_norm: clip each optimizer's gradients (G and D separately) to this L2 norm before its step (None:
            none). Manual optimisation: ``trainer.gradient_clip_val`` is refused by Lightning, this is its equivalent.
        scale, evaluation: see :class:`zoo.systems.base.VSRSystem`.

    Raises:
        WeightsError: (from :meth:`setup`, when fitting starts) ``lpips_weight > 0`` and the AlexNet weights file is
            missing or not AlexNet; the message names the file.
        ConfigError: negative weights, ``r1_interval < 1``, or a net whose ``scale`` differs from ``scale``.
    """

    family = "videogigagan"
    cpu_hint = SPEC.cpu_hint

    def __init__(
        self,
        *,
        net: VideoGigaGANNet | None = None,
        discriminator: VideoDiscriminator | None = None,
        charbonnier_weight: float = 10.0,
        lpips_weight: float = 5.0,
        lpips_weights: str | None = None,
        gan_weight: float = 0.05,
        r1_weight: float = 0.2048,
        r1_interval: int = 16,
        lr_g: float = 5e-5,
        lr_d: float = 5e-5,
        betas: tuple[float, float] = (0.0, 0.99),
        ema_decay: float | None = 0.999,
        whole_clip_propagation: bool = True,
        nonfinite: Literal["stop", "skip"] = "stop",
        max_nonfinite_skips: int = 100,
        grad_clip_norm: float | None = None,
        scale: int = 4,
        evaluation: EvalOptions | None = None,
    ) -> None:
        super().__init__(scale=scale, evaluation=evaluation, nonfinite=nonfinite,
                         max_nonfinite_skips=max_nonfinite_skips, grad_clip_norm=grad_clip_norm)
        if min(charbonnier_weight, lpips_weight, gan_weight, r1_weight) < 0:
            raise ConfigError(f"loss weights must be >= 0; got charbonnier {charbonnier_weight}, lpips {lpips_weight}, "
                              f"gan {gan_weight}, r1 {r1_weight}")
        if r1_interval < 1:
            raise ConfigError(f"r1_interval must be >= 1; got {r1_interval}")
        self.save_hyperparameters(ignore=["net", "discriminator"])
        # plain containers only, so that checkpoints load with torch.load(weights_only=True)
        self.hparams["evaluation"] = asdict(self.evaluation)
        self.hparams["betas"] = tuple(betas)
        self.automatic_optimization = False

        self.net_g = net if net is not None else VideoGigaGANNet(scale=scale)
        if getattr(self.net_g, "scale", scale) != scale:
            raise ConfigError(f"the generator is x{self.net_g.scale} but the system (and data) scale is {scale}")
        # the net's constructor arguments, so that load_videogigagan can rebuild it from a checkpoint alone
        self.hparams["net"] = describe_module(self.net_g)
        self.build_ema(ema_decay)

        self.charbonnier = CharbonnierLoss()
        # LPIPS is a training loss only: built when fitting starts (setup), kept out of the module tree so that
        # checkpoints hold no AlexNet weights and validate/test/predict never need the file.
        self.__dict__["_lpips"] = None
        if gan_weight > 0:
            self.net_d = discriminator if discriminator is not None else VideoDiscriminator()
            self.hparams["discriminator"] = describe_module(self.net_d)
            self.gan_loss = GANLoss(gan_type="nonsaturating")
        else:
            self.net_d = None
        self._d_steps = 0  # discriminator steps taken, for the lazy R1 schedule (saved in checkpoints)

    @property
    def lpips(self) -> nn.Module | None:
        """The frozen LPIPS loss network (a :class:`zoo.metrics.lpips.LPIPSMetric`), or None before fitting / when
        ``lpips_weight`` is 0."""
        return self.__dict__["_lpips"]

    def setup(self, stage: str) -> None:
        """When fitting starts, build the LPIPS loss (``lpips_weight > 0``): a missing AlexNet file stops the run here,
        before any step, with a :class:`~zoo.errors.WeightsError` naming the file. Then the shared start of a run
        (:meth:`zoo.systems.base.VSRSystem.setup`)."""
        super().setup(stage)
        if stage == "fit" and self.hparams.lpips_weight > 0 and self.lpips is None:
            self.__dict__["_lpips"] = self.build_lpips(self.hparams.lpips_weights)

    @staticmethod
    def build_lpips(path: str | None = None) -> nn.Module:
        """The frozen LPIPS (AlexNet v0.1) :class:`zoo.metrics.lpips.LPIPSMetric`; its ``.net`` is differentiable in its
        inputs (only the metric's own ``pairwise`` runs without gradients).

        Args:
            path: torchvision AlexNet state dict (None: ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``).

        Raises:
            WeightsError: the AlexNet file is missing (names it) or is not torchvision's AlexNet.
        """
        import warnings

        from zoo.metrics.lpips import ALEXNET_FILE, LPIPSMetric

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the metric's "LPIPS disabled" warning; we raise instead
            metric = LPIPSMetric(weights_path=path)
        if not metric.is_available:
            raise WeightsError(
                f"lpips_weight > 0 needs the LPIPS AlexNet trunk: put torchvision's '{ALEXNET_FILE}' at "
                f"{metric.weights_path} (`{ALEXNET.download_command}` fetches it; or pass lpips_weights / set "
                f"TORCH_HOME), or set lpips_weight: 0 to train without LPIPS. Nothing is downloaded at run time."
            )
        return metric

    # ------------------------------------------------------------------ inference
    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Super-resolve the clip (or chunk) ``lq`` (b, t, 3, h, w) in [0, 1] with the EMA generator when present.

        Propagation runs over exactly the frames given (whole-clip propagation + U-Net for this chunk).

        Returns:
            sr (b, t, 3, scale h, scale w), not clamped.
        """
        return self.inference_net(lq)

    def upscale(self, lq: torch.Tensor) -> torch.Tensor:
        """Upscale each clip of ``lq`` (b, t, 3, h, w) for validation/test/predict; result clamped to [0, 1].

        With ``evaluation.chunk_frames`` set, no tiling, a propagating net and ``whole_clip_propagation``, the
        features are propagated over the whole clip first (the paper's inference); otherwise the base system's
        chunked/tiled path (:func:`zoo.inference.upscale_tensor`, each chunk propagated on its own) is used.
        """
        opts = self.evaluation
        net = self.inference_net
        if (not self.hparams.whole_clip_propagation or opts.chunk_frames is None or opts.tile is not None
                or getattr(net, "propagation", None) is None):
            return super().upscale(lq)
        outs = [upscale_with_whole_clip_propagation(net, clip, chunk_frames=opts.chunk_frames, overlap=opts.overlap)
                for clip in lq.split(1, dim=0)]
        return torch.cat(outs, dim=0).float().clamp_(0.0, 1.0)

    # ------------------------------------------------------------------ training
    def _lpips_loss(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Mean over frames of LPIPS(sr_i, gt_i); inputs (b, t, 3, H, W) in [0, 1] (mapped to [-1, 1])."""
        metric = self.lpips
        if next(metric.parameters()).device != sr.device:
            metric.to(sr.device)
        sr_frames = rearrange(sr, "b t c h w -> (b t) c h w")
        gt_frames = rearrange(gt, "b t c h w -> (b t) c h w")
        return metric.net(sr_frames * 2 - 1, gt_frames * 2 - 1).mean()

    def _r1_penalty(self, logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``E_frames ||d sum(D(x)) / d x'||^2`` with ``x' = 2 x - 1`` the discriminator's [-1, 1] input.

        Args:
            logits_real: (b, t) logits of ``real``.
            real: (b, t, 3, H, W) in [0, 1] with ``requires_grad``.

        Returns:
            Scalar: the squared gradient norm per frame (over c, H, W), averaged over frames and clips.
        """
        (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
        # d/dx' = (d/dx) / 2 since x = (x' + 1) / 2
        return (grad / 2).square().sum(dim=(2, 3, 4)).mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One generator step, the EMA update and one discriminator step on ``{'lq', 'gt'}`` (b, t, 3, ...) in [0, 1].

        Logs ``train/charbonnier``, ``train/lpips``, ``train/gan_g`` (weighted), ``train/loss_g``, ``train/d_real``,
        ``train/d_fake`` (unweighted) and ``train/r1`` (unweighted penalty, on R1 steps).
        """
        lq, gt = batch["lq"], batch["gt"]
        opt_g, opt_d = self.manual_optimizers()
        hp = self.hparams

        sr = self.net_g(lq)
        losses: dict[str, torch.Tensor] = {"charbonnier": hp.charbonnier_weight * self.charbonnier(sr, gt)}
        if hp.lpips_weight > 0:
            if self.lpips is None:  # training_step called without Lightning's setup (e.g. by hand)
                self.setup("fit")
            losses["lpips"] = hp.lpips_weight * self._lpips_loss(sr, gt)
        if self.net_d is not None:
            losses["gan_g"] = hp.gan_weight * self.adversarial_loss(sr)
        loss_g = self.generator_step(opt_g, losses)

        logged = {k: v.detach() for k, v in losses.items()}
        if self.net_d is not None:
            self.net_d.requires_grad_(True)
            apply_r1 = hp.r1_weight > 0 and self._d_steps % hp.r1_interval == 0
            real = gt.detach().requires_grad_(apply_r1)
            logits_real = self.net_d(real)
            logits_fake = self.net_d(sr.detach())
            loss_d_real = self.gan_loss(logits_real, True, is_disc=True)
            loss_d_fake = self.gan_loss(logits_fake, False, is_disc=True)
            terms_d = {"d_real": loss_d_real, "d_fake": loss_d_fake}
            if apply_r1:
                r1 = self._r1_penalty(logits_real, real)
                terms_d["r1"] = hp.r1_weight / 2 * r1 * hp.r1_interval
                logged["r1"] = r1.detach()
            self.guarded_update(opt_d, terms_d)  # checks the terms and gradients (nonfinite), clips, steps
            self._d_steps += 1
            logged["d_real"] = loss_d_real.detach()
            logged["d_fake"] = loss_d_fake.detach()

        self.log_dict({f"train/{k}": v for k, v in logged.items()}, prog_bar=False)
        self.log("train/loss_g", loss_g.detach(), prog_bar=True)
        return loss_g.detach()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the discriminator step counter (lazy R1 phase) with the checkpoint."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["videogigagan_d_steps"] = self._d_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the family (:meth:`zoo.systems.base.VSRSystem.on_load_checkpoint`), restore the discriminator step
        counter (and, in the base class, the random states)."""
        super().on_load_checkpoint(checkpoint)
        self._d_steps = int(checkpoint.get("videogigagan_d_steps", 0))

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> Any:
        """Adam for G (trainable parameters only: SPyNet is frozen by default) and, with a GAN, for D; constant lr."""
        return self.adam_optimizers()
