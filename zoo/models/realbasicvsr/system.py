"""RealBasicVSR training system (Chan et al., "Investigating Tradeoffs in Real-World Video Super-Resolution", CVPR 2022).

Both stages of the paper's recipe live in one LightningModule with manual optimisation:

* stage 1 (``zoo/realbasicvsr.yaml``, "RealBasicVSR w/o GAN"): L1 on the output against the (USM-sharpened) GT plus
  the L1 cleaning loss between the cleaned LQ and the GT area-downsampled by ``scale``; Adam(0.9, 0.99) lr 1e-4;
  generator EMA 0.999.
* stage 2 (``configs/realbasicvsr/stage2_gan.yaml``): starts from a stage-1 checkpoint (``init_from``) and adds the VGG19
  perceptual loss (weight 1) and a vanilla GAN loss (weight 5e-2) from Real-ESRGAN's U-Net discriminator with
  spectral normalisation; G lr 5e-5, D lr 1e-4.

Facts from the official configs (ckkelvinchan/RealBasicVSR ``configs/realbasicvsr_*.py``; open-mmlab/mmagic
``configs/real_basicvsr/*.py`` and ``mmagic/models/editors/real_basicvsr/real_basicvsr.py``): sharpened GT in the pixel and
perceptual losses but not in the GAN loss; one discriminator step per generator step; EMA momentum 0.001 every step.

Note on step counts: with manual optimisation Lightning's ``global_step`` (and so ``max_steps`` and
``ModelCheckpoint(every_n_train_steps)``) counts every ``optimizer.step()``; in stage 2 one iteration is two steps (G and
D), so the stage-2 config sets ``max_steps: 300000`` for the paper's 150k iterations.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from basicsr.utils.img_process_util import USMSharp
from einops import rearrange

from zoo.config import describe_module
from zoo.errors import WeightsError
from zoo.losses import GANLoss, PerceptualLoss
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.models.realbasicvsr.convert import load_realbasicvsr
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.systems.base import EvalOptions, VSRSystem


class RealBasicVSR(VSRSystem):
    """LightningModule for RealBasicVSR, stage 1 (no GAN) or stage 2 (GAN) depending on the loss weights.

    Args:
        net: the generator; default ``RealBasicVSRNet()`` with the official hyper-parameters
            (64 channels, 20 cleaning and 20 propagation blocks, ``dynamic_refine_thres=255`` during training).
        discriminator: built only when ``gan_weight > 0``; default ``UNetDiscriminatorSN()`` (Real-ESRGAN).
        pixel_weight: weight of the L1 output loss.
        cleaning_weight: weight of the L1 cleaning loss (cleaned LQ vs GT area-downsampled by ``scale``).
        perceptual_weight: weight of the VGG19 perceptual loss (0 in stage 1, 1 in stage 2).
        perceptual_layers: VGG19 ``features`` index -> weight (official: conv1_2 .. conv5_4 = 0.1, 0.1, 1, 1, 1).
        vgg_weights: path of torchvision's ``vgg19-dcbb9e9d.pth`` (default ``$TORCH_HOME/hub/checkpoints/``);
            ``'random'`` only for tests.
        gan_weight: weight of the generator's vanilla GAN loss (0 in stage 1, 5e-2 in stage 2).
        sharpen_gt_pixel, sharpen_gt_perceptual, sharpen_gt_gan: use the USM-sharpened GT (radius 50, weight 0.5,
            threshold 10; basicsr ``USMSharp``) as target of that loss.
        lr_g, lr_d: Adam learning rates of generator and discriminator; ``betas`` both.
        ema_decay: decay of the generator EMA (``None`` disables it).
        eval_dynamic_refine_thres: the cleaning threshold (0-255 scale) used in validation/test/predict; the
            official test configs use 1.5 without GAN and 5 with GAN. Training always uses the net's own value.
        init_from: a stage-1 checkpoint (this project's Lightning ``.ckpt`` or the official ``.pth``) whose
            generator (EMA when present) initialises ``net`` (and the EMA); optimiser state is not taken.
        nonfinite, max_nonfinite_skips: a NaN / Inf loss or gradient stops training (``'stop'``, one line naming
            the step and the loss term) or skips that optimizer's update (``'skip'``, counted; training stops after
            ``max_nonfinite_skips``): :class:`zoo.systems.base.VSRSystem`.
        grad_clip_norm: clip each optimizer's gradients (G and D separately) to this L2 norm before its step (None:
            none). Manual optimisation: ``trainer.gradient_clip_val`` is refused by Lightning, this is its equivalent.
        scale, evaluation: see :class:`zoo.systems.base.VSRSystem`.

    Raises:
        WeightsError: when ``init_from`` or the VGG19 weights are missing or of the wrong kind.
    """

    family = "realbasicvsr"

    def __init__(
        self,
        *,
        net: RealBasicVSRNet | None = None,
        discriminator: UNetDiscriminatorSN | None = None,
        pixel_weight: float = 1.0,
        cleaning_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        perceptual_layers: dict[str, float] | None = None,
        vgg_weights: str | None = None,
        gan_weight: float = 0.0,
        sharpen_gt_pixel: bool = True,
        sharpen_gt_perceptual: bool = True,
        sharpen_gt_gan: bool = False,
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        ema_decay: float | None = 0.999,
        eval_dynamic_refine_thres: float = 1.5,
        init_from: str | None = None,
        nonfinite: Literal["stop", "skip"] = "stop",
        max_nonfinite_skips: int = 100,
        grad_clip_norm: float | None = None,
        scale: int = 4,
        evaluation: EvalOptions | None = None,
    ) -> None:
        super().__init__(scale=scale, evaluation=evaluation, nonfinite=nonfinite,
                         max_nonfinite_skips=max_nonfinite_skips, grad_clip_norm=grad_clip_norm)
        if scale != 4:
            raise ValueError(f"RealBasicVSR is an x4 network; got scale={scale}")
        self.save_hyperparameters(ignore=["net", "discriminator"])
        # plain containers only, so that checkpoints load with torch.load(weights_only=True)
        self.hparams["evaluation"] = asdict(self.evaluation)
        self.automatic_optimization = False

        self.net_g = net if net is not None else RealBasicVSRNet()
        # the net's constructor arguments, so that zoo.load_pretrained can rebuild it from a checkpoint alone
        self.hparams["net"] = describe_module(self.net_g)
        if init_from:
            self._init_generator(init_from)
        self.build_ema(ema_decay)

        self.usm = USMSharp()
        self.perceptual = (
            PerceptualLoss(layer_weights=perceptual_layers, weights=vgg_weights) if perceptual_weight > 0 else None
        )
        if gan_weight > 0:
            self.net_d = discriminator if discriminator is not None else UNetDiscriminatorSN()
            self.gan_loss = GANLoss(gan_type="vanilla")
        else:
            self.net_d = None

    def _init_generator(self, path: str) -> None:
        if not Path(path).is_file():
            raise WeightsError(f"init_from: no checkpoint at {path}")
        source = load_realbasicvsr(path)
        missing = self.net_g.load_state_dict(source.state_dict(), strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            raise WeightsError(
                f"init_from {path}: the checkpoint's generator does not fit this net "
                f"(missing {missing.missing_keys[:5]}, unexpected {missing.unexpected_keys[:5]})"
            )

    # ------------------------------------------------------------------ training
    def _sharpen(self, gt: torch.Tensor) -> torch.Tensor:
        frames = rearrange(gt, "b t c h w -> (b t) c h w")
        return rearrange(self.usm(frames).clamp(0, 1), "(b t) c h w -> b t c h w", b=gt.shape[0])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One generator step (and one discriminator step in stage 2) on ``{'lq', 'gt'}`` (b, t, 3, ...) in [0, 1]."""
        lq, gt = batch["lq"], batch["gt"]
        opt_g, opt_d = self.manual_optimizers()
        needs_sharp = self.hparams.sharpen_gt_pixel or (self.perceptual is not None and self.hparams.sharpen_gt_perceptual) or (
            self.net_d is not None and self.hparams.sharpen_gt_gan
        )
        gt_sharp = self._sharpen(gt) if needs_sharp else gt
        gt_pixel = gt_sharp if self.hparams.sharpen_gt_pixel else gt

        sr, lq_clean = self.net_g(lq, return_lqs=True)
        losses: dict[str, torch.Tensor] = {}
        losses["pixel"] = self.hparams.pixel_weight * F.l1_loss(sr, gt_pixel)
        if self.hparams.cleaning_weight > 0:
            frames = rearrange(gt_pixel, "b t c h w -> (b t) c h w")
            gt_clean = F.interpolate(frames, scale_factor=1 / self.scale, mode="area")
            gt_clean = rearrange(gt_clean, "(b t) c h w -> b t c h w", b=gt.shape[0])
            losses["clean"] = self.hparams.cleaning_weight * F.l1_loss(lq_clean, gt_clean)
        if self.perceptual is not None:
            gt_percep = gt_sharp if self.hparams.sharpen_gt_perceptual else gt
            losses["perceptual"] = self.hparams.perceptual_weight * self.perceptual(sr, gt_percep)
        sr_frames = rearrange(sr, "b t c h w -> (b t) c h w")
        if self.net_d is not None:
            losses["gan_g"] = self.hparams.gan_weight * self.adversarial_loss(sr_frames)
        loss_g = self.generator_step(opt_g, losses)

        if self.net_d is not None:
            gt_gan = rearrange(gt_sharp if self.hparams.sharpen_gt_gan else gt, "b t c h w -> (b t) c h w")
            losses.update(self.discriminator_step(opt_d, gt_gan, sr_frames))

        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=False)
        self.log("train/loss_g", loss_g.detach(), prog_bar=True)
        return loss_g.detach()

    # ------------------------------------------------------------------ evaluation
    def _set_eval_thres(self) -> None:
        net = self.inference_net
        self._train_thres = net.dynamic_refine_thres
        net.dynamic_refine_thres = self.hparams.eval_dynamic_refine_thres

    def _restore_thres(self) -> None:
        self.inference_net.dynamic_refine_thres = self._train_thres

    def on_validation_epoch_start(self) -> None:
        self._set_eval_thres()
        super().on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._restore_thres()

    def on_test_epoch_start(self) -> None:
        self._set_eval_thres()
        super().on_test_epoch_start()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._restore_thres()

    def on_predict_epoch_start(self) -> None:
        self._set_eval_thres()

    def on_predict_epoch_end(self) -> None:
        self._restore_thres()

    # ------------------------------------------------------------------ optimisers
    def configure_optimizers(self) -> Any:
        """Adam for G (and D in stage 2), betas (0.9, 0.99), constant lr as the official recipes ("NO learning policy")."""
        return self.adam_optimizers()
