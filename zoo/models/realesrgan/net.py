"""Real-ESRGAN applied to video frame by frame: the per-frame baseline every video super-resolution paper compares with.

Wang, Xie, Dong, Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021.
The networks are basicsr's: ``RRDBNet`` (RealESRGAN_x4plus: 64 features, 23 RRDB blocks, growth 32; 16.7 M
parameters) and ``SRVGGNetCompact`` (realesr-animevideov3: 64 features, 16 convolutions, PReLU; x2 / x3 / x4). This is
an image model, not one of the zoo's video paradigms: each frame is upscaled on its own.

Padding and tiles follow the ncnn tool that ships the weights (xinntao/Real-ESRGAN-ncnn-vulkan ``src/realesrgan.cpp``,
``prepadding = 10``): a frame is cut into tiles of ``tile`` x ``tile`` LQ pixels that do not overlap; each tile is
run with ``pre_pad`` pixels of context on every side, taken from the frame where it has them and reflected at the
frame border; the network's output of the context is cropped away (``pre_pad * scale`` pixels) and the tiles are
stitched side by side. With ``tile=None`` the whole frame is one tile (reflect-padded by ``pre_pad``). Our output then
equals the ncnn runtime's within 1 uint8 level, with and without tiles (``tests/test_realesrgan_ncnn.py``).
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
        pre_pad: context in LQ pixels around each tile: the frame's own pixels, reflected at the frame border
            (cropped after; at most the frame size - 1).
        tile: tile side in LQ pixels (None: whole frames). Tiles bound memory; with the released 10 px context their
            seams are not exactly invisible (the ncnn tool's trade-off, kept for parity).
        final_resize: bicubic resize factor after the network (the x2 / x3 animevideov3 files: the x4 network, then
            0.5 / 0.75); ``scale`` is the network's times this.
        **options: basicsr constructor options over the released sizes (e.g. a tiny variant's).

    ``forward(lq (b, t, 3, h, w) float [0, 1]) -> (b, t, 3, scale h, scale w)`` (not clamped).
    """

    def __init__(self, *, arch: str = "rrdbnet", scale: int = 4, pre_pad: int = 10, final_resize: float = 1.0,
                 tile: int | None = None, **options: object) -> None:
        super().__init__()
        for name, value, low in (("pre_pad", pre_pad, 0), ("tile", 1 if tile is None else tile, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
        self.arch, self.net_scale, self.pre_pad, self.final_resize = arch, int(scale), pre_pad, float(final_resize)
        self.tile = tile
        self.scale = int(round(self.net_scale * self.final_resize))
        self.net = build_arch(arch, self.net_scale, **options)

    def _run(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        """The network on one padded tile ``(n, 3, h + 2 pad, w + 2 pad)``; its output without the context."""
        multiple = {1: 4, 2: 2}.get(self.net_scale, 1)  # RRDBNet x1 / x2 unshuffle their input
        extra_h, extra_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
        if extra_h or extra_w:
            x = F.pad(x, (0, extra_w, 0, extra_h), mode="reflect")
        out = self.net(x)
        if self.final_resize != 1.0:  # realesr-animevideov3 x2 / x3: the x4 net, then bicubic down (its ncnn files)
            out = F.interpolate(out, scale_factor=self.final_resize, mode="bicubic", align_corners=False)
        h = (x.shape[-2] - extra_h - 2 * pad) * self.scale
        w = (x.shape[-1] - extra_w - 2 * pad) * self.scale
        cut = pad * self.scale
        return out[..., cut:cut + h, cut:cut + w]

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        check_rgb_video(lq, "lq")
        b, _, _, h, w = lq.shape
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        pad = min(self.pre_pad, h - 1, w - 1)
        if pad > 0:  # reflecting the whole frame once = each tile's own context, reflected only at the frame border
            frames = F.pad(frames, (pad, pad, pad, pad), mode="reflect")
        tile = self.tile or max(h, w)
        rows = []
        for y in range(0, h, tile):
            row = [self._run(frames[..., y:min(y + tile, h) + 2 * pad, x:min(x + tile, w) + 2 * pad], pad)
                   for x in range(0, w, tile)]
            rows.append(torch.cat(row, dim=-1))
        return rearrange(torch.cat(rows, dim=-2), "(b t) c h w -> b t c h w", b=b)
