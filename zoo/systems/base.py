"""The base LightningModule of every vsrzoo family: validation, test and predict logic written once.

A family's system subclasses :class:`VSRSystem`, builds its generator as ``self.net_g`` (and, when it keeps an
exponential moving average, ``self.net_g_ema``), and implements ``training_step`` and ``configure_optimizers``.
Everything after training is shared: running the network over whole clips through the same chunked and tiled
path as ``vsrzoo upscale`` (:func:`zoo.inference.upscale_tensor`), metrics against GT (:class:`zoo.metrics.VideoMetrics`)
next to a bicubic baseline, image grids (bicubic | SR | GT crops) in TensorBoard, and predictions for
``lightning predict`` (written by :class:`zoo.systems.writer.VideoPredictionWriter`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import make_grid

from zoo.data.degradations import bicubic_upsample
from zoo.family import CpuHint
from zoo.inference import upscale_tensor
from zoo.metrics import VideoMetrics
from zoo.provenance import provenance
from zoo.weights import CHECKPOINT_INFO


@dataclass(frozen=True)
class EvalOptions:
    """How validation, test and predict run the network and score it.

    Attributes:
        chunk_frames: frames per temporal chunk (``None``: the whole clip at once).
        overlap: frames shared by consecutive chunks, cross-faded (must be < ``chunk_frames``).
        tile: LQ tile size in pixels for spatial tiling (``None``: no tiling).
        tile_overlap: LQ pixels shared by neighbouring tiles, feather-blended.
        crop_border: pixels cropped from each border of SR and GT before PSNR/SSIM (field convention: ``scale``
            for x4 Real-world VSR tables is 0 or 4; BasicVSR's Vid4 protocol uses 0 on Y).
        lpips: compute LPIPS when its backbone weights are present locally (otherwise skipped with a warning).
        warping_error: compute the flow warping error E*warp, with flow and occlusion mask from the GT clip (the
            same motion for every model; logged as ``ewarp_gt_<flow>``).
        flow: flow estimator for E*warp: ``'auto'`` (RAFT-large when its weights are in
            ``$TORCH_HOME/hub/checkpoints``, else OpenCV DIS), ``'raft'`` or ``'dis'``.
        num_log_images: how many validation clips get an image grid in the logger.
        log_crop: side in GT pixels of the crop shown in the image grids.
    """

    chunk_frames: int | None = None
    overlap: int = 0
    tile: int | None = None
    tile_overlap: int = 0
    crop_border: int = 0
    lpips: bool = True
    warping_error: bool = True
    flow: str = "auto"
    num_log_images: int = 2
    log_crop: int = 192


def _zoo_frames() -> int:
    """How many consecutive frames of the ``zoo`` package call the function that calls this one (itself included)."""
    frame, count = sys._getframe(1), 0
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "zoo":
        count += 1
        frame = frame.f_back
    return count


# plain data: checkpoints that record it in their hyper-parameters load with torch.load(weights_only=True)
torch.serialization.add_safe_globals([EvalOptions])


class VSRSystem(L.LightningModule):
    """Shared validation/test/predict behaviour of the zoo's systems.

    Subclasses must set ``self.net_g`` (``nn.Module`` mapping LQ ``(b, t, 3, h, w)`` in [0, 1] to SR
    ``(b, t, 3, scale*h, scale*w)``) and may set ``self.net_g_ema``; :attr:`inference_net` prefers the EMA copy, as
    the official RealBasicVSR and GAN inference do.

    Args:
        scale: upscaling factor of the network (kept in sync with the datamodule's ``scale`` by the CLI).
        evaluation: see :class:`EvalOptions`.

    Attributes:
        family: the family table name of the subclass (``'realbasicvsr'``, ...), written into every checkpoint under
            ``checkpoint['vsrzoo']['family']`` so that a loader can say which family a checkpoint belongs to.
        cpu_hint: the family spec's :class:`~zoo.family.CpuHint` (its ``FamilySpec.cpu_hint``), or None: a full-size
            model run on the CPU is then announced in one line at the start of every run (:meth:`setup`).
    """

    family: str = ""
    cpu_hint: CpuHint | None = None

    def __init__(self, *, scale: int = 4, evaluation: EvalOptions | None = None) -> None:
        super().__init__()
        self.net_g_ema: nn.Module | None = None  # subclasses that keep an EMA replace it with a module
        self.scale = scale
        self.evaluation = evaluation or EvalOptions()
        self._metrics: dict[str, VideoMetrics] = {}

    def build_ema(self, ema_decay: float | None) -> None:
        """Keep an exponential moving average of ``self.net_g`` as ``self.net_g_ema`` (``None``: no EMA).

        Uses ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(ema_decay)`` over parameters and
        buffers; the first ``update_parameters`` call copies the generator, later ones apply
        ``ema = decay * ema + (1 - decay) * net`` (mmediting's EMA hook with momentum ``1 - decay``). Subclasses call
        ``self.net_g_ema.update_parameters(self.net_g)`` after each generator step.
        """
        if ema_decay is None:
            self.net_g_ema = None
            return
        self.net_g_ema = AveragedModel(self.net_g, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.net_g_ema.requires_grad_(False)

    def adam_optimizers(self) -> Any:
        """Adam for the generator's trainable parameters (``hparams.lr_g``) and, when ``self.net_d`` exists, for the
        discriminator (``hparams.lr_d``); both with ``hparams.betas`` and a constant learning rate."""
        betas = tuple(self.hparams.betas)
        trainable = [p for p in self.net_g.parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(trainable, lr=self.hparams.lr_g, betas=betas)
        if getattr(self, "net_d", None) is None:
            return opt_g
        opt_d = torch.optim.Adam(self.net_d.parameters(), lr=self.hparams.lr_d, betas=betas)
        return [opt_g, opt_d]

    # ------------------------------------------------------------------ manual G/D optimisation
    def manual_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """``(opt_g, opt_d)`` of manual optimisation; ``opt_d`` is None when there is no discriminator."""
        optimizers = self.optimizers()
        return tuple(optimizers) if isinstance(optimizers, (list, tuple)) else (optimizers, None)

    def adversarial_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """Generator's GAN term ``gan_loss(net_d(fake), real=True)`` with ``self.net_d`` frozen (its parameters get
        no gradient from the generator step). ``fake``: whatever ``self.net_d`` takes, e.g. (b t, 3, H, W)."""
        self.net_d.requires_grad_(False)
        return self.gan_loss(self.net_d(fake), True)

    def generator_step(self, opt_g: torch.optim.Optimizer, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum ``losses``, back-propagate, step ``opt_g``, then update the EMA generator (when there is one).

        Returns:
            the summed generator loss (a scalar tensor, still attached).
        """
        loss_g = sum(losses.values())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        if getattr(self, "net_g_ema", None) is not None:
            self.net_g_ema.update_parameters(self.net_g)
        return loss_g

    def discriminator_step(self, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                           fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update as in Real-ESRGAN / RealBasicVSR (BasicSR ``RealESRGANModel.optimize_parameters``):
        real and fake terms back-propagated one after the other, then one ``opt_d`` step; ``fake`` is detached.

        Returns:
            ``{'d_real', 'd_fake'}`` detached losses, for logging.
        """
        self.net_d.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_real = self.gan_loss(self.net_d(real), True, is_disc=True)
        self.manual_backward(loss_real)
        loss_fake = self.gan_loss(self.net_d(fake.detach()), False, is_disc=True)
        self.manual_backward(loss_fake)
        opt_d.step()
        return {"d_real": loss_real.detach(), "d_fake": loss_fake.detach()}

    # ------------------------------------------------------------------ start of a run
    def setup(self, stage: str) -> None:
        """At the start of ``fit`` / ``validate`` / ``test`` / ``predict``: warn once, in one line, when a full-size
        model of a family with a :attr:`cpu_hint` runs on the CPU (:meth:`cpu_warning`). Subclasses that override
        ``setup`` call ``super().setup(stage)``."""
        try:
            device_type = self.trainer.strategy.root_device.type
        except RuntimeError:  # not attached to a Trainer (setup called by hand)
            return
        message = self.cpu_warning(device_type)
        if message is not None:
            # attributed to the first caller outside the zoo (Lightning's hook runner), which Lightning's warning
            # format prints as one line: skip rank_zero_warn's three frames and the zoo's own
            rank_zero_warn(message, stacklevel=4 + _zoo_frames())

    def cpu_warning(self, device_type: str) -> str | None:
        """The one-line warning of :attr:`cpu_hint` for a run on ``device_type`` (``'cpu'``, ``'cuda'``, ...), or None
        (no hint, not the CPU, a named ``variant`` or fewer than the hint's ``min_params`` parameters)."""
        hint = self.cpu_hint
        if hint is None:
            return None
        num_params = sum(p.numel() for p in self.parameters())
        variant = self.hparams.get("variant") if hasattr(self, "hparams") else None
        if not hint.applies(device_type=device_type, num_params=num_params, variant=variant):
            return None
        return hint.message(self.family, num_params)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the family and where the checkpoint came from (:func:`zoo.provenance.provenance`: the training
        command and the code's commit) under ``checkpoint['vsrzoo']``."""
        info = checkpoint.setdefault(CHECKPOINT_INFO, {})
        info["family"] = self.family
        info["made_by"] = provenance()

    # ------------------------------------------------------------------ inference
    @property
    def inference_net(self) -> nn.Module:
        """The network used outside training: the EMA generator when there is one."""
        ema = getattr(self, "net_g_ema", None)
        if ema is None:
            return self.net_g
        return ema.module if isinstance(ema, torch.optim.swa_utils.AveragedModel) else ema

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Run :attr:`inference_net` on ``lq`` (b, t, 3, h, w) in [0, 1]; returns unclamped SR (b, t, 3, sh, sw)."""
        return self.inference_net(lq)

    def upscale(self, lq: torch.Tensor) -> torch.Tensor:
        """Upscale each clip of ``lq`` (b, t, 3, h, w) through the chunked/tiled path; returns SR on ``lq``'s device.

        The result is clamped to [0, 1] (what is displayed, scored and written).
        """
        opts = self.evaluation
        outs = []
        for clip in lq.split(1, dim=0):
            sr = upscale_tensor(
                self.forward,
                clip,
                scale=self.scale,
                chunk_frames=opts.chunk_frames,
                overlap=opts.overlap,
                tile=opts.tile,
                tile_overlap=opts.tile_overlap,
                device=lq.device,
                dtype=torch.float32,
            )
            outs.append(sr)
        return torch.cat(outs, dim=0).to(lq.device).clamp_(0.0, 1.0)

    def bicubic(self, lq: torch.Tensor) -> torch.Tensor:
        """The "Bicubic" baseline of every table for ``lq`` (b, t, 3, h, w): MATLAB ``imresize`` x``scale``
        (:func:`zoo.data.degradations.bicubic_upsample`), clamped to [0, 1]."""
        return bicubic_upsample(lq, self.scale)

    # ------------------------------------------------------------------ validation / test
    def _new_metrics(self) -> VideoMetrics:
        opts = self.evaluation
        return VideoMetrics(crop_border=opts.crop_border, lpips=opts.lpips, warping_error=opts.warping_error, flow=opts.flow)

    def _eval_start(self, stage: str) -> None:
        self._metrics[stage] = self._new_metrics()
        self._metrics[f"{stage}_bicubic"] = VideoMetrics(crop_border=self.evaluation.crop_border, lpips=False, warping_error=False)

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        lq, gt, keys = batch["lq"], batch["gt"], batch["key"]
        sr = self.upscale(lq)
        bicubic = self.bicubic(lq)
        self._metrics[stage].update(sr, gt, lq=lq, key=keys)
        self._metrics[f"{stage}_bicubic"].update(bicubic, gt, lq=lq, key=keys)
        if batch_idx < self.evaluation.num_log_images:
            self._log_grid(f"{stage}/{keys[0]}", bicubic[0], sr[0], gt[0])

    def _eval_end(self, stage: str) -> None:
        values = self._metrics.pop(stage).compute()
        baseline = self._metrics.pop(f"{stage}_bicubic").compute()
        logged = {f"{stage}/{k}": float(v) for k, v in values.items()}
        logged.update({f"{stage}/bicubic_{k}": float(v) for k, v in baseline.items()})
        self.log_dict(logged, sync_dist=True)

    def _log_grid(self, tag: str, bicubic: torch.Tensor, sr: torch.Tensor, gt: torch.Tensor) -> None:
        """Log bicubic | SR | GT crops of the middle frame (each (t, 3, H, W) in [0, 1]) as one image."""
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        t, _, h, w = gt.shape
        side = min(self.evaluation.log_crop, h, w)
        top, left = (h - side) // 2, (w - side) // 2
        mid = t // 2
        crops = [x[mid, :, top : top + side, left : left + side].float().cpu() for x in (bicubic, sr, gt)]
        experiment.add_image(tag, make_grid(crops, nrow=3, padding=4, pad_value=1.0), self.global_step)

    def on_validation_epoch_start(self) -> None:
        self._eval_start("val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start("test")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Upscale an LQ-only batch; returns ``{'sr': (b, t, 3, sh, sw) float32 CPU in [0, 1], 'key': [...]}``.

        :class:`zoo.systems.writer.VideoPredictionWriter` writes the frames or videos. The whole SR clip is held in
        memory (see :class:`zoo.data.datasets.PredictClipDataset` for the sizes; long videos: ``vsrzoo upscale``).
        """
        return {"sr": self.upscale(batch["lq"]).cpu(), "key": batch["key"]}
