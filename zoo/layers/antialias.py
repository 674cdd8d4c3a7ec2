"""Anti-aliased downsampling and the low/high-frequency split of feature maps.

- :class:`LowPass2d`: the binomial blur of BlurPool (Zhang, "Making Convolutional Networks Shift-Invariant Again",
  ICML 2019) applied at stride 1, so the result keeps the input size.
- :class:`HighFrequencySplit`: ``f_LF = LowPass2d(f)``, ``f_HF = f - f_LF`` (VideoGigaGAN's high-frequency shuttle,
  Xu et al. ECCV 2024, Sec. 3, "HF shuttle": ``f_i^HF = f_i - f_i^LF``).
- :class:`Downsample2d`: x2 downsampling by a strided 3x3 convolution, or, anti-aliased, by BlurPool (blur +
  subsample, ``timm.layers.BlurPool2d``) followed by a 3x3 convolution at the lower resolution.

Filter and padding are shared: ``LowPass2d(filter_size)`` and ``BlurPool2d(filt_size=filter_size, stride=2)`` use the
same normalised binomial filter (``[1, 2, 1] / 4`` outer itself for size 3, ``[1, 4, 6, 4, 1] / 16`` for size 5) and
the same reflect padding of ``(filter_size - 1) // 2`` pixels, so for odd filter sizes and even ``h, w``
``BlurPool2d(f) == LowPass2d(f)[..., ::2, ::2]`` exactly: the anti-aliased encoder passes the subsampled
low-frequency part of a feature map down and the HF split's residual is exactly what subsampling would drop.

All modules work on single feature maps ``(n, c, h, w)``; reflect padding needs ``h, w > (filter_size - 1) // 2``.
"""
from __future__ import annotations

import torch
from timm.layers import BlurPool2d
from torch import nn

from zoo.errors import ConfigError

#: Binomial filter sizes that ``timm.layers.BlurPool2d`` documents (3 = [1, 2, 1], 5 = [1, 4, 6, 4, 1]).
SUPPORTED_FILTER_SIZES = (3, 5)


def check_filter_size(filter_size: int) -> None:
    """Raise ConfigError unless ``filter_size`` is a supported odd binomial filter size (3 or 5)."""
    if filter_size not in SUPPORTED_FILTER_SIZES:
        raise ConfigError(f"blur filter_size must be one of {SUPPORTED_FILTER_SIZES} (odd binomial filters keep "
                          f"BlurPool and the stride-1 low-pass aligned); got {filter_size!r}")


class LowPass2d(nn.Module):
    """Depthwise binomial blur at stride 1 (BlurPool's filter without the subsampling).

    Args:
        filter_size: 3 or 5 (binomial coefficients ``C(n-1, k) / 2**(n-1)``, outer product, sums to 1).

    Raises:
        ConfigError: for an unsupported filter size.
    """

    def __init__(self, *, filter_size: int = 3) -> None:
        super().__init__()
        check_filter_size(filter_size)
        self.blur = BlurPool2d(channels=None, filt_size=filter_size, stride=1, pad_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur ``x`` (n, c, h, w) -> (n, c, h, w), same dtype; a constant map is returned unchanged."""
        return self.blur(x)


class HighFrequencySplit(nn.Module):
    """Split a feature map into its low-pass part and the high-frequency residual.

    ``f_LF = LowPass2d(f)``, ``f_HF = f - f_LF`` (VideoGigaGAN Sec. 3, high-frequency shuttle), so
    ``f_LF + f_HF == f`` up to float rounding.

    Args:
        filter_size: binomial filter size, 3 or 5 (same filter as the encoder's BlurPool).
    """

    def __init__(self, *, filter_size: int = 3) -> None:
        super().__init__()
        self.low_pass = LowPass2d(filter_size=filter_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(f_LF, f_HF)``, both (n, c, h, w) like ``x``."""
        low = self.low_pass(x)
        return low, x - low


class HighFrequencyShuttle(nn.Module):
    """What a U-Net skip connection carries with the HF shuttle: ``f - LowPass2d(f)``.

    A thin module around :class:`HighFrequencySplit` that returns only the high-frequency part, so that the skip
    path has one module to inspect (forward hooks see ``f`` as input and ``f_HF`` as output).

    Args:
        filter_size: binomial filter size, 3 or 5.
    """

    def __init__(self, *, filter_size: int = 3) -> None:
        super().__init__()
        self.split = HighFrequencySplit(filter_size=filter_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``f_HF = x - LowPass2d(x)``, (n, c, h, w) like ``x``."""
        return self.split(x)[1]


class Downsample2d(nn.Module):
    """x2 spatial downsampling with a channel change, strided or anti-aliased.

    - ``blurpool=False``: ``Conv2d(in, out, 3, stride=2, padding=1)`` (the strided convolutions of the GigaGAN
      upsampler's encoder, as described in VideoGigaGAN Sec. 3).
    - ``blurpool=True``: ``BlurPool2d(stride=2)`` (binomial blur + subsample, Zhang 2019) followed by
      ``Conv2d(in, out, 3, stride=1, padding=1)`` at the lower resolution; the strided convolution is replaced by
      BlurPool as in VideoGigaGAN Sec. 3 ("we apply BlurPool layers to replace all the strided convolution layers
      in the upsampler encoder").

    Both variants have exactly the same parameters (one 3x3 convolution with bias), so two nets built from the same
    seed hold the same weights and differ only in where the subsampling happens.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        blurpool: use BlurPool instead of the strided convolution.
        filter_size: binomial filter size of BlurPool (3 or 5).

    Raises:
        ConfigError: for an unsupported filter size.
    """

    def __init__(self, *, in_channels: int, out_channels: int, blurpool: bool = True, filter_size: int = 3) -> None:
        super().__init__()
        check_filter_size(filter_size)
        self.blurpool = blurpool
        self.pool = BlurPool2d(channels=None, filt_size=filter_size, stride=2, pad_mode="reflect") if blurpool else None
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=1 if blurpool else 2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample ``x`` (n, in_channels, h, w) with even h, w -> (n, out_channels, h / 2, w / 2)."""
        if self.pool is not None:
            x = self.pool(x)
        return self.conv(x)
