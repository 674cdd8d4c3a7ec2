"""Flow-guided recurrent latent propagation (training-free), Upscale-A-Video's global temporal consistency.

Zhou et al., "Upscale-A-Video", CVPR 2024, Sec. 3.2 ("flow-guided recurrent latent propagation"); official code
sczhou/Upscale-A-Video ``models_video/propagation_module.py`` (``Propagation(learnable=False)``,
``fbConsistencyCheck``), ``models_video/RAFT/raft_bi.py`` (flows) and ``models_video/pipeline_upscale_a_video.py``
(called on the predicted x0 at the user's ``propagation_steps`` with ``interpolation='nearest'``, ``mode='fuse'``,
``fuse_scale=0.5``, ``alpha1=0.001``, ``alpha2=0.05``).

Flow naming follows the zoo (:mod:`zoo.layers.propagation`, BasicVSR): the direction of the propagation branch that
uses the flow.

- ``flows_backward[:, i]``: flow from frame ``i`` to frame ``i + 1`` (``RAFT(frame_i, frame_i+1)``); it backward-
  warps frame ``i + 1`` onto frame ``i`` (official name: ``flows_forward``).
- ``flows_forward[:, i]``: flow from frame ``i + 1`` to frame ``i``; it warps frame ``i`` onto frame ``i + 1``
  (official name: ``flows_backward``).

Propagation of ``x`` (b, t, c, h, w), each step with the occlusion mask ``m`` of the flow used:

    backward branch, i = t-2 .. 0:  p_i = m * (w p_{i+1}->i + (1 - w) x_i) + (1 - m) x_i,     p_{t-1} = x_{t-1}
    forward branch,  i = 1 .. t-1:  q_i = m * (w q_{i-1}->i + (1 - w) p_i) + (1 - m) p_i,     q_0 = p_0

with ``w = fuse_weight`` (0.5) and ``a->i`` the nearest-neighbour backward warp of ``a`` onto frame ``i``. The result
is ``q``: the forward branch runs over the backward branch's output, so both directions reach every frame.
Where the flow is zero and the frames agree, propagation changes nothing; where the mask is 0 (occlusion), the
frame keeps its own value.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ConfigError, InputError
from zoo.layers.flow import flow_warp

__all__ = ["estimate_bidirectional_flows", "flow_consistency_mask", "propagate_latents", "resize_flow"]

#: Forward-backward check constants of the official pipeline call (``alpha1``, ``alpha2``); the function defaults
#: of the official ``fbConsistencyCheck`` are 0.01 / 0.5 (Sundaram et al., ECCV 2010), the pipeline passes these.
CONSISTENCY_ALPHA1 = 0.001
CONSISTENCY_ALPHA2 = 0.05


def resize_flow(flow: torch.Tensor, size: tuple[int, int], *, mode: str = "area") -> torch.Tensor:
    """Resample a flow field to ``size`` and rescale its vectors to the new pixel grid.

    Args:
        flow: (n, 2, h, w) pixels, channel 0 = x, channel 1 = y.
        size: (H, W) target size.
        mode: ``'area'`` (official choice for flow -> latent resolution) or ``'bilinear'`` (official choice when
            undoing RAFT's padding to a multiple of 8).

    Returns:
        (n, 2, H, W): x scaled by ``W / w``, y by ``H / h``. (The official code scales both by ``W / w``, equal for
        the aspect-preserving resizes it does.)
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise InputError(f"flow must be (n, 2, h, w); got {tuple(flow.shape)}")
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flow, size=tuple(size), mode=mode, **kwargs)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device)
    return out * scale.view(1, 2, 1, 1)


@torch.no_grad()
def estimate_bidirectional_flows(
    flow_net: nn.Module,
    frames: torch.Tensor,
    *,
    num_flow_updates: int = 20,
    pair_batch: int = 8,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RAFT flows between neighbouring frames, both directions, at the frames' resolution.

    Frames are resized (bilinear) to multiples of 8 for RAFT and the flows resized back (official
    ``RAFT_bi.forward``: 20 iterations, inputs in [-1, 1]).

    Args:
        flow_net: torchvision ``raft_large`` (or any module ``(img1, img2, num_flow_updates=) -> list of flows``,
            the last being used), in eval mode.
        frames: (b, t, 3, h, w) in [-1, 1].
        num_flow_updates: RAFT iterations (official 20).
        pair_batch: frame pairs per RAFT call (memory bound).
        device: where RAFT runs (default: the flow net's device). Results come back to ``frames``' device.

    Returns:
        ``(flows_forward, flows_backward)``, each (b, t - 1, 2, h, w) float32 pixels (see module docstring).

    Raises:
        InputError: for a clip that is not (b, t >= 2, 3, h, w).
    """
    if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] < 2:
        raise InputError(f"frames must be (b, t >= 2, 3, h, w) in [-1, 1]; got {tuple(frames.shape)}")
    b, t, _, h, w = frames.shape
    if device is None:
        device = next(flow_net.parameters()).device
    size8 = (int(math.ceil(h / 8) * 8), int(math.ceil(w / 8) * 8))
    first = rearrange(frames[:, :-1], "b t c h w -> (b t) c h w")
    second = rearrange(frames[:, 1:], "b t c h w -> (b t) c h w")
    outs: dict[str, list[torch.Tensor]] = {"to_next": [], "to_prev": []}
    for start in range(0, first.shape[0], pair_batch):
        a = first[start:start + pair_batch].to(device=device, dtype=torch.float32)
        c = second[start:start + pair_batch].to(device=device, dtype=torch.float32)
        if (h, w) != size8:
            a = F.interpolate(a, size=size8, mode="bilinear", align_corners=False)
            c = F.interpolate(c, size=size8, mode="bilinear", align_corners=False)
        for key, (src, dst) in (("to_next", (a, c)), ("to_prev", (c, a))):
            flow = flow_net(src, dst, num_flow_updates=num_flow_updates)[-1].float()
            outs[key].append(resize_flow(flow, (h, w), mode="bilinear").to(frames.device))
    to_next = rearrange(torch.cat(outs["to_next"]), "(b t) c h w -> b t c h w", b=b)
    to_prev = rearrange(torch.cat(outs["to_prev"]), "(b t) c h w -> b t c h w", b=b)
    # flow i -> i+1 warps frame i+1 onto i: the backward branch's flow (and vice versa)
    return to_prev, to_next


def flow_consistency_mask(flow: torch.Tensor, flow_reverse: torch.Tensor, *, alpha1: float = CONSISTENCY_ALPHA1,
                          alpha2: float = CONSISTENCY_ALPHA2) -> torch.Tensor:
    """Forward-backward consistency check: 1 where following ``flow`` then ``flow_reverse`` returns home.

    ``valid = |f + r(f)|^2 < alpha1 (|f|^2 + |r(f)|^2) + alpha2`` with ``r(f)`` = ``flow_reverse`` bilinearly
    warped by ``flow`` (Sundaram et al., ECCV 2010; official ``fbConsistencyCheck``).

    Args:
        flow: (n, 2, h, w) pixels, from frame A to frame B (warps B onto A).
        flow_reverse: (n, 2, h, w) pixels, from B to A.
        alpha1, alpha2: relative and absolute squared-error thresholds (official pipeline: 0.001, 0.05 px^2).

    Returns:
        (n, 1, h, w) float in {0, 1}, same dtype as ``flow``.
    """
    reverse_warped = flow_warp(flow_reverse, flow)
    diff = (flow + reverse_warped).square().sum(dim=1, keepdim=True)
    magnitude = flow.square().sum(dim=1, keepdim=True) + reverse_warped.square().sum(dim=1, keepdim=True)
    return (diff < alpha1 * magnitude + alpha2).to(flow.dtype)


def _check_flows(x: torch.Tensor, flows: torch.Tensor, name: str) -> None:
    b, t = x.shape[:2]
    if flows.ndim != 5 or flows.shape[:3] != (b, t - 1, 2):
        raise InputError(f"{name} must be (b={b}, t-1={t - 1}, 2, h, w); got {tuple(flows.shape)}")


def propagate_latents(
    x: torch.Tensor,
    flows_forward: torch.Tensor,
    flows_backward: torch.Tensor,
    *,
    fuse_weight: float = 0.5,
    interpolation: str = "nearest",
    alpha1: float = CONSISTENCY_ALPHA1,
    alpha2: float = CONSISTENCY_ALPHA2,
) -> torch.Tensor:
    """Bidirectional recurrent flow-guided fusion of per-frame latents (see the module docstring).

    Args:
        x: (b, t, c, h, w) latents (Upscale-A-Video: the predicted x0 of a denoising step), any dtype/device.
        flows_forward: (b, t - 1, 2, h', w') pixels at any resolution (resized with ``'area'`` to (h, w) and
            rescaled, as the official module does); ``[:, i]`` warps frame ``i`` onto ``i + 1``.
        flows_backward: (b, t - 1, 2, h', w'); ``[:, i]`` warps frame ``i + 1`` onto ``i``.
        fuse_weight: weight of the propagated latent in the fusion (official ``fuse_scale`` 0.5); 1 copies it.
        interpolation: warp sampling, ``'nearest'`` (official) or ``'bilinear'``.
        alpha1, alpha2: consistency-check thresholds (:func:`flow_consistency_mask`).

    Returns:
        (b, t, c, h, w), same dtype and device as ``x``. A single frame is returned unchanged.

    Raises:
        InputError: for mismatched shapes. ConfigError: ``fuse_weight`` outside [0, 1].
    """
    if x.ndim != 5:
        raise InputError(f"x must be (b, t, c, h, w); got {tuple(x.shape)}")
    if not 0.0 <= fuse_weight <= 1.0:
        raise ConfigError(f"fuse_weight must be in [0, 1]; got {fuse_weight}")
    b, t, _, h, w = x.shape
    if t < 2:
        return x
    _check_flows(x, flows_forward, "flows_forward")
    _check_flows(x, flows_backward, "flows_backward")

    def at_latent(flows: torch.Tensor) -> torch.Tensor:
        frames = rearrange(flows, "b t c h w -> (b t) c h w").to(device=x.device, dtype=torch.float32)
        return rearrange(resize_flow(frames, (h, w), mode="area"), "(b t) c h w -> b t c h w", b=b)

    forward, backward = at_latent(flows_forward), at_latent(flows_backward)

    def step(prop: torch.Tensor, current: torch.Tensor, flow: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
        mask = flow_consistency_mask(flow, reverse, alpha1=alpha1, alpha2=alpha2)
        warped = flow_warp(prop.float(), flow, interpolation=interpolation)
        fused = fuse_weight * warped + (1.0 - fuse_weight) * current.float()
        return (mask * fused + (1.0 - mask) * current.float()).to(x.dtype)

    backward_out = [x[:, t - 1]]
    for i in range(t - 2, -1, -1):
        backward_out.append(step(backward_out[-1], x[:, i], backward[:, i], forward[:, i]))
    backward_out.reverse()
    out = [backward_out[0]]
    for i in range(1, t):
        out.append(step(out[-1], backward_out[i], forward[:, i - 1], backward[:, i - 1]))
    return torch.stack(out, dim=1)
