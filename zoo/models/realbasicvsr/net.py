"""RealBasicVSR generator, read top to bottom (its discriminator is :class:`zoo.layers.discriminators.UNetDiscriminatorSN`).

Paper: K. C. K. Chan, S. Zhou, X. Xu, C. C. Loy, "Investigating Tradeoffs in Real-World Video
Super-Resolution", CVPR 2022 (Sec. 3: image pre-cleaning; Sec. 4: stochastic degradation).
Official code (the reference for every detail below): mmediting 0.x
``mmedit/models/backbones/sr_backbones/real_basicvsr_net.py`` and ``basicvsr_net.py`` (BasicVSR, Chan et al.
CVPR 2021), ``mmedit/models/components/discriminators/unet_disc.py`` (Real-ESRGAN, Wang et al. ICCVW 2021).

Data flow of :class:`RealBasicVSRNet` (x4 only)::

    lq (b, t, 3, h, w) --image cleaning (residual, up to 3 passes)--> cleaned lq
        --SPyNet flows between neighbours--> flows_backward, flows_forward (b, t-1, 2, h, w)
        --backward recurrent branch (warp + 20 residual blocks)--> per-frame backward features
        --forward recurrent branch + fusion + 2x PixelShuffle x2 + convs--> residual at 4h x 4w
        + bilinear x4 upsampling of the cleaned frame --> sr (b, t, 3, 4h, 4w)
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from zoo.config import register_init_args
from zoo.layers.checks import check_rgb_video
from zoo.layers.blocks import PixelShufflePack, ResidualBlocksWithInputConv
from zoo.layers.flow import SPyNet, flow_warp

#: Upsampling factor; the architecture (two PixelShuffle x2 stages) supports x4 only.
SCALE = 4
#: At most this many cleaning passes ("determined empirically", official ``real_basicvsr_net.py``).
MAX_CLEANING_PASSES = 3
#: Smallest LQ side given to the BasicVSR part. mmediting 0.x asserts h, w >= 64 (SPyNet's coarsest level is
#: size / 32); smaller frames are padded up to 64 here and the output is cropped back.
MIN_PROPAGATION_SIZE = 64
#: Channels of the high-resolution layers (``upsample2`` output, ``conv_hr``); fixed to 64 officially,
#: independent of ``mid_channels``.
HR_CHANNELS = 64


class RealBasicVSRNet(nn.Module):
    """RealBasicVSR: image cleaning module + BasicVSR, x4 real-world video super-resolution.

    Image cleaning (paper Sec. 3.2, official ``RealBasicVSRNet.forward``): ``lq <- lq + cleaning(lq)`` where
    ``cleaning`` = :class:`ResidualBlocksWithInputConv` (3 -> ``mid_channels``, ``num_cleaning_blocks``
    blocks) + a 3x3 conv back to RGB. The pass is repeated while the mean absolute residue over the whole
    batch is >= ``dynamic_refine_thres / 255``, at most 3 passes (the check comes after each pass, so there
    is always at least one). ``dynamic_refine_thres = 255`` gives exactly one pass (training; also the
    official inference config ``configs/realbasicvsr_x4.py``), the mmediting test configs use 5.

    BasicVSR (Chan et al. CVPR 2021, official ``BasicVSRNet``): SPyNet flows between neighbouring cleaned
    frames; a backward branch runs from the last frame to the first, each step warping the propagated
    features with the flow and refining ``[frame, features]`` with ``num_propagation_blocks`` residual
    blocks; a forward branch does the same from first to last; at each frame the two features are fused
    (1x1 conv), upsampled by two PixelShuffle x2 stages, passed through ``conv_hr`` and ``conv_last``
    (LeakyReLU 0.1 between them) and added to a **bilinear** (align_corners=False) x4 upsampling of the
    cleaned frame. The output is not clamped.

    If the clip has an even number of frames and its second half is the mirror of the first
    (``frames[i] == frames[t-1-i]`` exactly, the training-time "mirror" clips), the forward flows are the
    time-reversed backward flows and are not recomputed (official ``check_if_mirror_extended``).

    SPyNet is frozen (``requires_grad=False``) as in the official code; gradients still flow through the
    estimated flow into the cleaned frames.

    Spatial sizes: every layer has stride 1 at LQ resolution and SPyNet resizes internally to multiples of 32,
    so any ``h, w >= 64`` is processed exactly as officially. Frames smaller than 64 on a side (rejected by the
    mmediting 0.x assertion) are padded after cleaning (reflect, or replicate when the pad exceeds the frame)
    to 64 and the output is cropped back to ``4h x 4w``.

    Args:
        mid_channels: channels of the cleaning and propagation features (64 officially).
        num_propagation_blocks: residual blocks per propagation branch (20).
        num_cleaning_blocks: residual blocks of the cleaning module (20).
        dynamic_refine_thres: cleaning stops when the mean |residue| < this / 255 (units: 8-bit grey levels).
        is_fix_cleaning: freeze the cleaning module (``requires_grad=False``).
        is_sequential_cleaning: clean one time step at a time (less peak memory, same result).
        spynet_pretrained: optional path of SPyNet weights (see :class:`zoo.layers.SPyNet`).

    The constructor arguments are recorded as ``init_args`` (:func:`zoo.config.register_init_args`) so that
    checkpoints can rebuild the net. Parameter names are ours; ``zoo/models/realbasicvsr/convert.py`` maps the
    official ones. With the
    defaults the net has 6,294,834 parameters (paper: 6.3M), 4,854,534 of them trainable (SPyNet: 1,440,300).
    """

    scale: int = SCALE

    @register_init_args
    def __init__(
        self,
        *,
        mid_channels: int = 64,
        num_propagation_blocks: int = 20,
        num_cleaning_blocks: int = 20,
        dynamic_refine_thres: float = 255.0,
        is_fix_cleaning: bool = False,
        is_sequential_cleaning: bool = False,
        spynet_pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.dynamic_refine_thres = float(dynamic_refine_thres)
        self.is_sequential_cleaning = is_sequential_cleaning

        # Image cleaning module (paper Sec. 3.2).
        self.cleaning = nn.Sequential(OrderedDict(
            features=ResidualBlocksWithInputConv(in_channels=3, out_channels=mid_channels,
                                                 num_blocks=num_cleaning_blocks),
            to_rgb=nn.Conv2d(mid_channels, 3, 3, 1, 1, bias=True),
        ))
        if is_fix_cleaning:
            self.cleaning.requires_grad_(False)

        # BasicVSR: flow, two propagation branches, reconstruction.
        self.spynet = SPyNet(pretrained=spynet_pretrained)
        self.spynet.requires_grad_(False)
        self.backward_branch = ResidualBlocksWithInputConv(
            in_channels=mid_channels + 3, out_channels=mid_channels, num_blocks=num_propagation_blocks)
        self.forward_branch = ResidualBlocksWithInputConv(
            in_channels=mid_channels + 3, out_channels=mid_channels, num_blocks=num_propagation_blocks)
        self.fusion = nn.Conv2d(2 * mid_channels, mid_channels, 1, 1, 0, bias=True)
        self.upsample1 = PixelShufflePack(in_channels=mid_channels, out_channels=mid_channels, scale_factor=2)
        self.upsample2 = PixelShufflePack(in_channels=mid_channels, out_channels=HR_CHANNELS, scale_factor=2)
        self.conv_hr = nn.Conv2d(HR_CHANNELS, HR_CHANNELS, 3, 1, 1)
        self.conv_last = nn.Conv2d(HR_CHANNELS, 3, 3, 1, 1)

    def clean(self, lq: torch.Tensor) -> torch.Tensor:
        """Apply the image cleaning module with dynamic refinement.

        Args:
            lq: (b, t, 3, h, w) float in [0, 1].

        Returns:
            Cleaned frames (b, t, 3, h, w), same range convention (not clamped).
        """
        b, t = lq.shape[:2]
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        threshold = self.dynamic_refine_thres / 255.0
        for _ in range(MAX_CLEANING_PASSES):
            if self.is_sequential_cleaning:
                residue = torch.cat([self.cleaning(chunk) for chunk in frames.split(b)], dim=0)
            else:
                residue = self.cleaning(frames)
            frames = frames + residue
            if torch.mean(torch.abs(residue)) < threshold:
                break
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b, t=t)

    def compute_flows(self, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SPyNet flows between neighbouring frames.

        Args:
            lq: (b, t, 3, h, w) float in [0, 1], t >= 2.

        Returns:
            ``(flows_forward, flows_backward)``, each (b, t-1, 2, h, w) in pixels.
            ``flows_backward[:, i]`` is the flow from frame i to frame i+1 (warps frame i+1's features to
            frame i, backward-time propagation); ``flows_forward[:, i]`` from frame i+1 to frame i.
        """
        b, t = lq.shape[:2]
        earlier = rearrange(lq[:, :-1], "b t c h w -> (b t) c h w")
        later = rearrange(lq[:, 1:], "b t c h w -> (b t) c h w")
        flows_backward = rearrange(self.spynet(earlier, later), "(b t) c h w -> b t c h w", b=b, t=t - 1)
        first_half, second_half = lq[:, : t // 2], lq[:, t - t // 2:]
        if t % 2 == 0 and torch.equal(first_half, second_half.flip(1)):
            # Mirror-extended clip: the forward flows equal the backward flows reversed in time.
            flows_forward = flows_backward.flip(1)
        else:
            flows_forward = rearrange(self.spynet(later, earlier), "(b t) c h w -> b t c h w", b=b, t=t - 1)
        return flows_forward, flows_backward

    def _propagate(self, lq: torch.Tensor) -> torch.Tensor:
        """BasicVSR on cleaned frames (b, t, 3, h, w), h and w >= 64 -> sr (b, t, 3, 4h, 4w)."""
        b, t, _, h, w = lq.shape
        if t > 1:
            flows_forward, flows_backward = self.compute_flows(lq)

        # Backward-time propagation: last frame to first.
        backward_feats: list[torch.Tensor | None] = [None] * t
        feat = lq.new_zeros(b, self.mid_channels, h, w)
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                feat = flow_warp(feat, flows_backward[:, i])
            feat = self.backward_branch(torch.cat([lq[:, i], feat], dim=1))
            backward_feats[i] = feat

        # Forward-time propagation, fusion and x4 reconstruction per frame.
        outputs = []
        feat = lq.new_zeros(b, self.mid_channels, h, w)
        for i in range(t):
            frame = lq[:, i]
            if i > 0:
                feat = flow_warp(feat, flows_forward[:, i - 1])
            feat = self.forward_branch(torch.cat([frame, feat], dim=1))
            # in-place activations: conv and pixel-shuffle outputs are not saved for backward, and each pass at
            # 4h x 4w x 64 channels would otherwise allocate a new full-resolution tensor
            out = F.leaky_relu(self.fusion(torch.cat([backward_feats[i], feat], dim=1)), 0.1, inplace=True)
            backward_feats[i] = None  # release memory as soon as possible
            out = F.leaky_relu(self.upsample1(out), 0.1, inplace=True)
            out = F.leaky_relu(self.upsample2(out), 0.1, inplace=True)
            out = F.leaky_relu(self.conv_hr(out), 0.1, inplace=True)
            out = self.conv_last(out)
            # the official skip is bilinear (mmediting basicvsr_net.py ``self.img_upsample``), not the zoo's bicubic one
            out = out + F.interpolate(frame, scale_factor=SCALE, mode="bilinear", align_corners=False)
            outputs.append(out)
        return torch.stack(outputs, dim=1)

    def forward(self, lq: torch.Tensor, return_lqs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Super-resolve a batch of clips x4.

        Args:
            lq: low-quality clips (b, t, 3, h, w), RGB float in [0, 1], any h, w >= 1 and t >= 1.
            return_lqs: also return the cleaned LQ frames (for the cleaning loss, paper Sec. 3.2).

        Returns:
            ``sr`` (b, t, 3, 4h, 4w), float, not clamped; with ``return_lqs`` the tuple ``(sr, cleaned)`` where
            ``cleaned`` is (b, t, 3, h, w).

        Raises:
            InputError: if ``lq`` is not a float tensor laid out as (b, t, 3, h, w).
        """
        check_rgb_video(lq, "lq")
        cleaned = self.clean(lq)
        h, w = cleaned.shape[-2:]
        pad_h, pad_w = max(MIN_PROPAGATION_SIZE - h, 0), max(MIN_PROPAGATION_SIZE - w, 0)
        if pad_h or pad_w:
            b = cleaned.shape[0]
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            frames = rearrange(cleaned, "b t c h w -> (b t) c h w")
            frames = F.pad(frames, (0, pad_w, 0, pad_h), mode=mode)
            sr = self._propagate(rearrange(frames, "(b t) c h w -> b t c h w", b=b))
            sr = sr[..., : SCALE * h, : SCALE * w]
        else:
            sr = self._propagate(cleaned)
        if return_lqs:
            return sr, cleaned
        return sr
