"""Flow-guided bidirectional recurrent feature propagation (BasicVSR).

Source: Chan et al., "BasicVSR: The Search for Essential Components in Video Super-Resolution and Beyond",
CVPR 2021, Sec. 3.1 (bidirectional propagation, feature-level flow warping with SPyNet); official code mmediting 0.x
``mmedit/models/backbones/sr_backbones/basicvsr_net.py`` (``BasicVSRNet.compute_flow`` / ``forward``). The module
returns the per-frame features of both directions and leaves fusion and upsampling to the caller, so that
families with different reconstruction heads (RealBasicVSR's pixel-shuffle head, VideoGigaGAN's U-Net) share it.

Data flow for a clip of ``t`` frames (``b, t, 3, h, w``)::

    flows_backward[:, i] = SPyNet(frame i, frame i+1)   warps features of frame i+1 onto frame i
    flows_forward[:, i]  = SPyNet(frame i+1, frame i)   warps features of frame i onto frame i+1
    backward branch, i = t-1 .. 0:  feat = blocks([frame_i, warp(feat, flows_backward[:, i])])
    forward branch,  i = 0 .. t-1:  feat = blocks([frame_i, warp(feat, flows_forward[:, i-1])])

The first step of each branch starts from zero features. Parameter names: ``spynet.*``, ``backward_branch.*``,
``forward_branch.*`` (the names of :class:`zoo.models.realbasicvsr.net.RealBasicVSRNet`'s BasicVSR part).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from zoo.errors import InputError
from zoo.layers.blocks import ResidualBlocksWithInputConv
from zoo.layers.flow import SPyNet, flow_warp


class BidirectionalPropagation(nn.Module):
    """BasicVSR's bidirectional, flow-aligned recurrent propagation over a whole clip.

    SPyNet estimates flows between neighbouring frames; a backward branch runs from the last frame to the first and a
    forward branch from the first to the last, each step warping the propagated features to the current frame
    (:func:`zoo.layers.flow.flow_warp`, bilinear, zero padding) and refining ``[frame RGB, warped features]`` with
    :class:`zoo.layers.blocks.ResidualBlocksWithInputConv`. If the clip has an even number of frames and its second
    half mirrors the first (``frames[i] == frames[t-1-i]``, the training-time "mirror" clips), the forward flows are the
    time-reversed backward flows and are not recomputed (official ``check_if_mirror_extended``).

    SPyNet is frozen by default (``requires_grad=False``, as in RealBasicVSR); gradients still flow through the
    estimated flows into the input frames.

    Args:
        mid_channels: channels of the propagated features.
        num_blocks: residual blocks per branch (BasicVSR: 30; RealBasicVSR: 20).
        spynet_pretrained: optional path of SPyNet weights (see :class:`zoo.layers.flow.SPyNet`).
        freeze_spynet: keep SPyNet's weights fixed.

    Raises:
        WeightsError: if ``spynet_pretrained`` cannot be loaded.
    """

    #: ``torch.compile`` (:func:`zoo.inference.compile_targets`) compiles the per-frame parts (SPyNet, the branches),
    #: never this loop over frames, which would unroll into one graph per clip length.
    compile_whole = False

    def __init__(
        self,
        *,
        mid_channels: int = 64,
        num_blocks: int = 30,
        spynet_pretrained: str | None = None,
        freeze_spynet: bool = True,
    ) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.spynet = SPyNet(pretrained=spynet_pretrained)
        if freeze_spynet:
            self.spynet.requires_grad_(False)
        self.backward_branch = ResidualBlocksWithInputConv(
            in_channels=mid_channels + 3, out_channels=mid_channels, num_blocks=num_blocks)
        self.forward_branch = ResidualBlocksWithInputConv(
            in_channels=mid_channels + 3, out_channels=mid_channels, num_blocks=num_blocks)

    def compute_flows(self, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SPyNet flows between neighbouring frames.

        Args:
            lq: frames (b, t, 3, h, w), RGB float in [0, 1], t >= 2.

        Returns:
            ``(flows_forward, flows_backward)``, each (b, t-1, 2, h, w) in pixels (channel 0 = x, 1 = y).
            ``flows_backward[:, i]`` warps frame i+1's features onto frame i; ``flows_forward[:, i]`` warps frame i's
            features onto frame i+1.
        """
        b, t = lq.shape[:2]
        earlier = rearrange(lq[:, :-1], "b t c h w -> (b t) c h w")
        later = rearrange(lq[:, 1:], "b t c h w -> (b t) c h w")
        flows_backward = rearrange(self.spynet(earlier, later), "(b t) c h w -> b t c h w", b=b, t=t - 1)
        if t % 2 == 0 and torch.equal(lq[:, : t // 2], lq[:, t // 2:].flip(1)):
            flows_forward = flows_backward.flip(1)
        else:
            flows_forward = rearrange(self.spynet(later, earlier), "(b t) c h w -> b t c h w", b=b, t=t - 1)
        return flows_forward, flows_backward

    def forward(self, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagate features through the whole clip in both directions.

        Args:
            lq: frames (b, t, 3, h, w), RGB float in [0, 1], any t >= 1 and h, w >= 1 (SPyNet resizes internally to
                multiples of 32).

        Returns:
            ``(feats_backward, feats_forward)``, each (b, t, mid_channels, h, w): the output of the backward branch
            (information from frames i..t-1) and of the forward branch (frames 0..i) at every frame i.

        Raises:
            InputError: if ``lq`` is not a float tensor laid out as (b, t, 3, h, w).
        """
        if not isinstance(lq, torch.Tensor) or lq.ndim != 5 or lq.shape[2] != 3 or not lq.is_floating_point():
            shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
            raise InputError(f"BidirectionalPropagation expects frames (b, t, 3, h, w) float in [0, 1]; got {shape}")
        b, t, _, h, w = lq.shape
        if t > 1:
            flows_forward, flows_backward = self.compute_flows(lq)

        feats_backward: list[torch.Tensor] = [lq.new_zeros(0)] * t
        feat = lq.new_zeros(b, self.mid_channels, h, w)
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                feat = flow_warp(feat, flows_backward[:, i])
            feat = self.backward_branch(torch.cat([lq[:, i], feat], dim=1))
            feats_backward[i] = feat

        feats_forward: list[torch.Tensor] = []
        feat = lq.new_zeros(b, self.mid_channels, h, w)
        for i in range(t):
            if i > 0:
                feat = flow_warp(feat, flows_forward[:, i - 1])
            feat = self.forward_branch(torch.cat([lq[:, i], feat], dim=1))
            feats_forward.append(feat)
        return torch.stack(feats_backward, dim=1), torch.stack(feats_forward, dim=1)
