"""The base LightningModule of every vsrzoo family: validation, test and predict logic written once.

A family's system subclasses :class:`VSRSystem`, builds its generator as ``self.net_g`` (and, when it keeps an
exponential moving average, ``self.net_g_ema``), and implements ``training_step`` and ``configure_optimizers``.
Everything after training is shared: running the network over whole clips through the same chunked and tiled
path as ``vsrzoo upscale`` (:func:`zoo.inference.upscale_tensor`), metrics against GT (:class:`zoo.metrics.VideoMetrics`)
next to a bicubic baseline, image grids (bicubic | SR | GT crops) in TensorBoard, and predictions for
``lightning predict`` (written by :class:`zoo.systems.writer.VideoPredictionWriter`).

Training guards, also written once here: every family's loss terms are checked before the backward pass
(:meth:`VSRSystem.check_losses`; manual G/D steps through :meth:`VSRSystem.guarded_update`) and the gradients before
every optimizer step (:meth:`VSRSystem.on_before_optimizer_step`); a NaN / Inf stops training with one
:class:`~zoo.errors.TrainingError` line or skips the update (``nonfinite``). Manual-optimisation systems clip with
``grad_clip_norm`` there; automatic ones with the trainer's ``gradient_clip_val``. A checkpoint of another family is
refused before Lightning loads it (:meth:`VSRSystem.on_load_checkpoint`).
"""
from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import make_grid

from zoo.data.datasets import stable_seed
from zoo.data.degradations import bicubic_upsample
from zoo.errors import ConfigError, TrainingError, WeightsError
from zoo.family import CpuHint
from zoo.inference import upscale_tensor
from zoo.metrics import VideoMetrics
from zoo.provenance import provenance
from zoo.weights import CHECKPOINT_INFO, checkpoint_info

#: What a training step does with a non-finite (NaN / Inf) loss term or gradient: raise, or skip the update.
NONFINITE_MODES = ("stop", "skip")


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


def _describe(value: torch.Tensor) -> str:
    """A loss value for a message: the number for a scalar, else how many of its elements are NaN / Inf."""
    value = value.detach().float()
    if value.numel() == 1:
        number = float(value)
        return str(number) if not math.isfinite(number) else f"{number:.4g}"
    nan, inf = int(value.isnan().sum()), int(value.isinf().sum())
    return f"{nan} nan / {inf} inf of {value.numel()}" if nan or inf else f"mean {float(value.mean()):.4g}"


def _describe_terms(values: Mapping[str, torch.Tensor], names: list[str]) -> str:
    return ", ".join(f"{name} = {_describe(values[name])}" for name in names)


# plain data: checkpoints that record it in their hyper-parameters load with torch.load(weights_only=True)
torch.serialization.add_safe_globals([EvalOptions])


def rng_states() -> dict[str, Any]:
    """This process's global random states: torch CPU, every initialised CUDA device, numpy and ``random``.

    Returns:
        ``{'torch': ByteTensor, 'cuda': [ByteTensor, ...], 'numpy': {'name', 'keys' (int64 tensor), 'pos',
        'has_gauss', 'gauss'}, 'python': tuple}`` (what :func:`set_rng_states` takes): tensors and plain values only,
        so that checkpoints still load with ``torch.load(weights_only=True)``.
    """
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return {"torch": torch.get_rng_state(), "cuda": cuda, "numpy": numpy_state, "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore :func:`rng_states` (CUDA states only when this process sees as many devices)."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    random.setstate(states["python"])


def _all_gather(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` over the default process group; ``[value]`` without one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_clips(clips: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each result key over the per-clip dicts that have it (``math.fsum``, so the order of the clips does
    not change the result; ``'key'`` is not a result)."""
    values: dict[str, list[float]] = {}
    for clip in clips:
        for name, value in clip.items():
            if name != "key":
                values.setdefault(name, []).append(value)
    return {name: math.fsum(vals) / len(vals) for name, vals in values.items()}


class VSRSystem(L.LightningModule):
    """Shared validation/test/predict behaviour of the zoo's systems.

    Subclasses must set ``self.net_g`` (``nn.Module`` mapping LQ ``(b, t, 3, h, w)`` in [0, 1] to SR
    ``(b, t, 3, scale*h, scale*w)``) and may set ``self.net_g_ema``; :attr:`inference_net` prefers the EMA copy, as
    the official RealBasicVSR and GAN inference do.

    Args:
        scale: upscaling factor of the network (kept in sync with the datamodule's ``scale`` by the CLI).
        evaluation: see :class:`EvalOptions`.
        nonfinite: what a training step does when a loss term (checked before the backward pass,
            :meth:`check_losses`) or a gradient (checked before every optimizer step, :meth:`on_before_optimizer_step`)
            is NaN or Inf: ``'stop'`` raises :class:`~zoo.errors.TrainingError` naming the step and the loss terms
            (the CLI prints it as one line); ``'skip'`` leaves the weights unchanged for that update, counts it
            (logged as ``train/nonfinite_skipped``, reported when training ends) and goes on.
        max_nonfinite_skips: with ``'skip'``: training stops (``TrainingError``) once more updates than this were
            skipped.
        grad_clip_norm: manual optimisation only (GAN families): clip the gradients of each optimizer to this total
            L2 norm before its step (Lightning's ``clip_gradients``; ``trainer.gradient_clip_val`` is the same thing for
            automatic optimisation and is refused with manual optimisation). None: no clipping.

    Attributes:
        family: the family table name of the subclass (``'realbasicvsr'``, ...), written into every checkpoint under
            ``checkpoint['vsrzoo']['family']`` so that a loader can say which family a checkpoint belongs to.
        cpu_hint: the family spec's :class:`~zoo.family.CpuHint` (its ``FamilySpec.cpu_hint``), or None: a full-size
            model run on the CPU is then announced in one line at the start of every run (:meth:`setup`).
    """

    family: str = ""
    cpu_hint: CpuHint | None = None

    def __init__(self, *, scale: int = 4, evaluation: EvalOptions | None = None,
                 nonfinite: Literal["stop", "skip"] = "stop", max_nonfinite_skips: int = 100,
                 grad_clip_norm: float | None = None) -> None:
        super().__init__()
        if nonfinite not in NONFINITE_MODES:
            raise ConfigError(f"nonfinite must be one of {list(NONFINITE_MODES)}; got {nonfinite!r}")
        if isinstance(max_nonfinite_skips, bool) or not isinstance(max_nonfinite_skips, int) or max_nonfinite_skips < 0:
            raise ConfigError(f"max_nonfinite_skips must be an integer >= 0; got {max_nonfinite_skips!r}")
        if grad_clip_norm is not None and not (isinstance(grad_clip_norm, (int, float)) and grad_clip_norm > 0):
            raise ConfigError(f"grad_clip_norm must be > 0 or null; got {grad_clip_norm!r}")
        self.net_g_ema: nn.Module | None = None  # subclasses that keep an EMA replace it with a module
        self.scale = scale
        self.evaluation = evaluation or EvalOptions()
        self.nonfinite = nonfinite
        self.max_nonfinite_skips = max_nonfinite_skips
        self.grad_clip_norm = None if grad_clip_norm is None else float(grad_clip_norm)
        self.nonfinite_skipped = 0  # optimizer updates skipped for non-finite values (saved in checkpoints)
        self._last_losses: dict[str, torch.Tensor] = {}
        self._last_skip: str | None = None
        self._update_skipped = False
        self._metrics: dict[str, VideoMetrics] = {}
        self._rng_to_restore: dict[str, Any] | None = None  # this rank's states from the checkpoint being resumed
        self._rng_before_validation: dict[str, Any] | None = None

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
        """Check and sum ``losses``, back-propagate, step ``opt_g``, then update the EMA generator (when there is one).

        :meth:`guarded_update` does the checks: a non-finite term or gradient stops training or skips this update
        (then neither the generator nor its EMA changes), per ``nonfinite``.

        Returns:
            the summed generator loss (a scalar tensor, still attached).
        """
        loss_g = sum(losses.values())
        if self.guarded_update(opt_g, losses) and getattr(self, "net_g_ema", None) is not None:
            self.net_g_ema.update_parameters(self.net_g)
        return loss_g

    def discriminator_step(self, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                           fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update as in Real-ESRGAN / RealBasicVSR (BasicSR ``RealESRGANModel.optimize_parameters``):
        real and fake terms back-propagated one after the other, then one ``opt_d`` step; ``fake`` is detached. Each
        term is checked before its backward pass and the gradients before the step (:meth:`check_losses`,
        :meth:`on_before_optimizer_step`).

        Returns:
            ``{'d_real', 'd_fake'}`` detached losses, for logging.
        """
        self.net_d.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_real = self.gan_loss(self.net_d(real), True, is_disc=True)
        if not self.check_losses({"d_real": loss_real}):
            return {"d_real": loss_real.detach()}
        self.manual_backward(loss_real)
        loss_fake = self.gan_loss(self.net_d(fake.detach()), False, is_disc=True)
        logged = {"d_real": loss_real.detach(), "d_fake": loss_fake.detach()}
        if not self.check_losses(logged):
            opt_d.zero_grad(set_to_none=True)
            return logged
        self.manual_backward(loss_fake)
        self._optimizer_step(opt_d)
        return logged

    # ------------------------------------------------------------------ training guards (non-finite values, clipping)
    def guarded_update(self, optimizer: torch.optim.Optimizer, losses: Mapping[str, torch.Tensor]) -> bool:
        """One manual-optimisation update: check the loss terms (:meth:`check_losses`), zero the gradients,
        back-propagate the sum of ``losses``, and step ``optimizer`` (whose gradients are checked, and with
        ``grad_clip_norm`` clipped, in :meth:`on_before_optimizer_step`).

        Args:
            optimizer: one of :meth:`manual_optimizers`.
            losses: term name -> scalar tensor (weighted), e.g. ``{'pixel': ..., 'clean': ...}``.

        Returns:
            True when the weights were updated; False when the update was skipped (``nonfinite='skip'``).

        Raises:
            TrainingError: a non-finite term or gradient with ``nonfinite='stop'``, or too many skips.
        """
        if not self.check_losses(losses):
            return False
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(sum(losses.values()))
        return self._optimizer_step(optimizer)

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """``optimizer.step()``; False when :meth:`on_before_optimizer_step` skipped it (gradients dropped)."""
        self._update_skipped = False
        optimizer.step()
        return not self._update_skipped

    def check_losses(self, losses: Mapping[str, torch.Tensor]) -> bool:
        """Check that every loss term is finite, before it is back-propagated.

        With automatic optimisation a family's ``training_step`` returns None when this is False (Lightning then
        skips the backward pass and the step); manual-optimisation steps go through :meth:`guarded_update`. With
        several processes (DDP) the ranks agree: one rank's non-finite term stops or skips on every rank.

        Args:
            losses: term name -> tensor (any shape; usually scalars), as logged (``train/<name>``).

        Returns:
            True when all are finite; False when they are not and ``nonfinite='skip'`` (the skip is counted).

        Raises:
            TrainingError: ``nonfinite='stop'`` and a term is NaN / Inf (one line: the step, every term's value), or
                more than ``max_nonfinite_skips`` skips.
        """
        values = {name: value.detach() for name, value in losses.items()}
        self._last_losses = values
        if not values:
            return True
        bad = [name for name, value in values.items() if not bool(torch.isfinite(value).all())]
        if self._all_ranks(not bad):
            return True
        shown = ", ".join(f"{name} = {_describe(values[name])}" for name in bad) if bad else "on another process"
        others = [name for name in values if name not in bad]
        detail = f" (finite: {_describe_terms(values, others)})" if others else ""
        self._nonfinite(f"non-finite loss at step {self.global_step}: {shown}{detail}")
        return False

    def check_gradients(self, optimizer: torch.optim.Optimizer) -> bool:
        """Check that the gradients of ``optimizer``'s parameters are finite (one fused norm; a GPU sync).

        Not checked under fp16 mixed precision: its gradient scaler skips steps with Inf gradients itself (and
        lowers the scale). On a skip the gradients are dropped (set to None), so the optimizer's step leaves the
        parameters (and their Adam moments) unchanged.

        Returns:
            True when finite (or not checked); False when not and ``nonfinite='skip'``.

        Raises:
            TrainingError: as :meth:`check_losses`; the message names the first parameter with a non-finite
                gradient and the step's loss terms.
        """
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params or getattr(getattr(self._trainer, "precision_plugin", None), "scaler", None) is not None:
            return True
        total = torch.nn.utils.get_total_norm([p.grad for p in params], error_if_nonfinite=False)
        if bool(torch.isfinite(total)):
            return True
        names = {id(p): name for name, p in self.named_parameters()}
        bad = [names.get(id(p), "?") for p in params if not bool(torch.isfinite(p.grad).all())]
        where = f"{bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "") if bad else "their total norm"
        losses = _describe_terms(self._last_losses, list(self._last_losses)) or "not recorded"
        for p in params:
            p.grad = None
        self._nonfinite(f"non-finite gradient at step {self.global_step}: {where} (losses: {losses})")
        self._update_skipped = True
        return False

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Before every optimizer step (automatic and manual optimisation): :meth:`check_gradients`, then, with manual
        optimisation and ``grad_clip_norm``, clip the gradients to that L2 norm. (Lightning applies
        ``trainer.gradient_clip_val`` itself after this hook, with automatic optimisation only.)"""
        if not self.check_gradients(optimizer):
            return
        if not self.automatic_optimization and self.grad_clip_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")

    def _all_ranks(self, finite: bool) -> bool:
        """True only when ``finite`` on every process (one all-reduce under DDP; as is on one device)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return finite
        return bool(trainer.strategy.reduce_boolean_decision(finite, all=True))

    def _nonfinite(self, message: str) -> None:
        """Stop (raise) or count a skipped update, per ``nonfinite``."""
        if self.nonfinite == "stop":
            raise TrainingError(f"{message}; lower the learning rate, clip the gradients, or let training skip such "
                                "steps (model.init_args.nonfinite: skip)")
        self.nonfinite_skipped += 1
        self._last_skip = message
        if self.nonfinite_skipped > self.max_nonfinite_skips:
            raise TrainingError(f"{self.nonfinite_skipped} updates skipped for non-finite values, more than "
                                f"max_nonfinite_skips={self.max_nonfinite_skips}; the last: {message}")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """With ``nonfinite='skip'``: log ``train/nonfinite_skipped`` (updates skipped so far)."""
        if self.nonfinite == "skip":
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped))

    def on_train_end(self) -> None:
        """Report (one line) how many updates were skipped for non-finite values, when any were."""
        if self.nonfinite_skipped:
            rank_zero_warn(f"{self.nonfinite_skipped} optimizer updates were skipped for non-finite losses or "
                           f"gradients (nonfinite: skip); the last: {self._last_skip}", stacklevel=4 + _zoo_frames())

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
        command and the code's commit) under ``checkpoint['vsrzoo']``, and every rank's global random states
        (:func:`rng_states`, a list indexed by global rank) under ``checkpoint['vsrzoo']['rng']``.

        Lightning saves model, optimizers, loops, callbacks and the datamodule's state but not the global random
        generators, which the diffusion families draw their noise from; with them a run resumed from the
        checkpoint continues bit for bit on the CPU. Under DDP every rank calls this hook (Lightning builds the
        checkpoint on all ranks and rank 0 writes it), so the states are gathered here.
        """
        info = checkpoint.setdefault(CHECKPOINT_INFO, {})
        info["family"] = self.family
        info["made_by"] = provenance()
        info["rng"] = _all_gather(rng_states())
        if self.nonfinite_skipped:  # updates skipped for non-finite values (nonfinite: skip), carried on by a resume
            info["nonfinite_skipped"] = self.nonfinite_skipped

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another family (``lightning fit --ckpt_path``, ``load_from_checkpoint``) before
        Lightning loads its tensors, restore the count of skipped updates, and keep this rank's random states of the
        checkpoint; they are set when training starts (:meth:`on_train_start`), after Lightning's sanity validation,
        so that nothing between loading and the first resumed step draws from them (a checkpoint of another world
        size gives each rank the states of rank ``rank % saved ranks``). Subclasses that override it call
        ``super().on_load_checkpoint(checkpoint)`` first.

        Raises:
            WeightsError: the checkpoint records another family (one line naming the file and both families).
        """
        info = checkpoint_info(checkpoint)
        source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
        type(self).check_checkpoint_family(checkpoint, source=str(source))
        self.nonfinite_skipped = int(info.get("nonfinite_skipped", 0) or 0)
        states = info.get("rng")
        if states:  # this rank's random states, set when training starts (on_train_start)
            self._rng_to_restore = states[self.global_rank % len(states)]

    def on_train_start(self) -> None:
        """Set the random states of the checkpoint being resumed (see :meth:`on_load_checkpoint`). A fresh run on
        several ranks instead reseeds each rank from one shared draw and its rank (``seed_everything`` gives every rank
        the same generators, hence the same training noise); a one-process run keeps its generators."""
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        elif self.trainer.world_size > 1 and self.global_step == 0:
            seed = stable_seed(int(torch.randint(0, 2**62, (1,))), "rank", self.global_rank)
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)

    @classmethod
    def check_checkpoint_family(cls, checkpoint: object, *, source: str) -> None:
        """Refuse a checkpoint whose ``checkpoint['vsrzoo']['family']`` is not this system's :attr:`family`.

        Raises:
            WeightsError: ``"<source> is a videogigagan checkpoint; the realbasicvsr system (RealBasicVSR) cannot load
                it (use the videogigagan recipe, e.g. --config zoo/videogigagan.yaml)"``.
        """
        recorded = checkpoint_info(checkpoint).get("family")
        if recorded and cls.family and recorded != cls.family:
            raise WeightsError(f"{source} is a {recorded} checkpoint; the {cls.family} system ({cls.__name__}) cannot "
                               f"load it (use the {recorded} recipe, e.g. --config zoo/{recorded}.yaml)")

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
        """Log the means over all clips of all ranks: each rank's per-clip results are gathered and a clip key seen
        on several ranks (Lightning's ``DistributedSampler`` pads an uneven split by repeating clips) counts once,
        so the logged values equal a one-process run on the same clips (``sync_dist`` then averages equal values)."""
        logged = {}
        for name, prefix in ((stage, f"{stage}/"), (f"{stage}_bicubic", f"{stage}/bicubic_")):
            clips: dict[str, dict] = {}
            for rank_clips in _all_gather(self._metrics.pop(name).per_clip()):
                for clip in rank_clips:
                    clips.setdefault(clip["key"], clip)
            logged.update({f"{prefix}{k}": float(v) for k, v in mean_over_clips(list(clips.values())).items()})
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

    def on_validation_start(self) -> None:
        """Validation leaves the global random states as it found them (restored in :meth:`on_validation_epoch_end`,
        before any checkpoint of that validation is built): training draws the same numbers however often it is
        validated, and a resumed run matches an uninterrupted one."""
        self._rng_before_validation = rng_states()

    def on_validation_epoch_start(self) -> None:
        self._eval_start("val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")
        if self._rng_before_validation is not None:
            set_rng_states(self._rng_before_validation)
            self._rng_before_validation = None

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
