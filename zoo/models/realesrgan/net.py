"""Real-ESRGAN applied to video frame by frame: the per-frame baseline every video super-resolution paper compares with.

Wang, Xie, Dong, Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021.
The networks are basicsr's: ``RRDBNet`` (RealESRGAN_x4plus: 64 features, 23 RRDB blocks, growth 32; 16.7 M
parameters) and ``SRVGGNetCompact`` (realesr-animevideov3: 64 features, 16 convolutions, PReLU; x2 / x3 / x4). This is
an image model, not one of the zoo's video paradigms: each frame is upscaled on its own.

Before the network each frame is padded by ``pre_pad`` pixels with reflection and the output is cropped by
``pre_pad * scale`` (``RealESRGANer``'s ``pre_pad`` in the official inference; 10 px reflect is also what the ncnn
tool does: our output then equals the ncnn runtime's within 1 uint8 level).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError
from zoo.layers.checks import check_rgb_video

__all__ = ["ARCHS", "RealESRGANNet", "build_arch"]

#: Architecture name -> basicsr constructor options of the released networks.
ARCHS = {
    "rrdbnet": dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32),
    "srvgg": dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, act_type="prelu"),
}


def build_arch(arch: str, scale: int, **options: object) -> nn.Module:
    """A basicsr ``RRDBNet`` (``arch='rrdbnet'``) or ``SRVGGNetCompact`` (``'srvgg'``) upscaling by ``scale``, with the
    released sizes (:data:`ARCHS`) updated by ``options``.

    Raises:
        ConfigError: unknown ``arch`` or ``scale`` (RRDBNet: 1, 2, 4; SRVGGNetCompact: any positive integer).
    """
    if arch not in ARCHS:
        raise ConfigError(f"Real-ESRGAN arch must be one of {sorted(ARCHS)}; got {arch!r}")
    if arch == "rrdbnet":
        from basicsr.archs.rrdbnet_arch import RRDBNet

        if scale not in (1, 2, 4):
            raise ConfigError(f"RRDBNet upscales by 1, 2 or 4; got scale={scale}")
        return RRDBNet(**{**ARCHS[arch], **options}, scale=scale)
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    return SRVGGNetCompact(**{**ARCHS[arch], **options}, upscale=scale)


class RealESRGANNet(nn.Module):
    """A Real-ESRGAN image network over every frame of a clip.

    Args:
        arch: ``'rrdbnet'`` or ``'srvgg'`` (:func:`build_arch`).
        scale: upscaling factor.
        pre_pad: reflection padding in LQ pixels around each frame (cropped after; at most the frame size - 1).
        final_resize: bicubic resize factor after the network (the x2 / x3 animevideov3 files: the x4 network, then
            0.5 / 0.75); ``scale`` is the network's times this.
        **options: basicsr constructor options over the released sizes (e.g. a tiny variant's).

    ``forward(lq (b, t, 3, h, w) float [0, 1]) -> (b, t, 3, scale h, scale w)`` (not clamped).
    """

    def __init__(self, *, arch: str = "rrdbnet", scale: int = 4, pre_pad: int = 10, final_resize: float = 1.0,
                 **options: object) -> None:
        super().__init__()
        if isinstance(pre_pad, bool) or not isinstance(pre_pad, int) or pre_pad < 0:
            raise ConfigError(f"pre_pad must be a non-negative integer; got {pre_pad!r}")
        self.arch, self.net_scale, self.pre_pad, self.final_resize = arch, int(scale), pre_pad, float(final_resize)
        self.scale = int(round(self.net_scale * self.final_resize))
        self.net = build_arch(arch, self.net_scale, **options)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        check_rgb_video(lq, "lq")
        b, _, _, h, w = lq.shape
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        pad = min(self.pre_pad, h - 1, w - 1)
        if pad > 0:
            frames = F.pad(frames, (pad, pad, pad, pad), mode="reflect")
        out = self.net(frames)
        if self.final_resize != 1.0:  # realesr-animevideov3 x2 / x3: the x4 net, then bicubic down (its ncnn files)
            out = F.interpolate(out, scale_factor=self.final_resize, mode="bicubic", align_corners=False)
        if pad > 0:
            cut = pad * self.scale
            out = out[..., cut:-cut, cut:-cut]
        return rearrange(out, "(b t) c h w -> b t c h w", b=b)
