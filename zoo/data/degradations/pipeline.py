"""The zoo's batched torch variant of the real-world degradation (:class:`RealESRGANDegradation`), and BI.

:class:`RealESRGANDegradation` is **not** RealBasicVSR's pipeline (that is
:class:`zoo.data.degradations.RealBasicVSRDegradation`, the default of the datamodule and the benchmark): it keeps
Real-ESRGAN's order (Wang et al., ICCVW 2021, Sec. 3 and Fig. 2; xinntao/Real-ESRGAN
``realesrgan/models/realesrgan_model.py`` ``feed_data``), runs on torch tensors (GPU-capable, BasicSR's DiffJPEG by
default) and adds RealBasicVSR's per-clip drift and one video compression::

    x = USM-sharpened GT                                  (Real-ESRGAN / RealBasicVSR degrade ``gt_usm``)
    stage 1: blur -> random resize (GT-relative) -> Gaussian or Poisson noise -> JPEG
    stage 2: blur (prob 0.8) -> random resize (relative to the LQ size) -> Gaussian or Poisson noise
    final, in random order (prob 0.5 each):
        [resize to LQ size + sinc filter (prob 0.8)]  and  [JPEG + video compression (libx264 / mpeg4)]
    round to 8-bit levels

Differences from RealBasicVSR's official pipeline: one video compression instead of two (the official one also
compresses after the first JPEG), the second JPEG inside the shuffled group (official: before it), codecs
libx264 / mpeg4 with equal probability (official: libx264 / h264 / mpeg4, so x264 2/3), a constant resize factor
per clip (official: drifting, frames of different sizes), the second resize relative to the LQ size (official:
to the current size), Poisson noise on the 0..1 scale (official: 0..255), and a final rounding to 8 bits.

Per clip, the discrete choices (kernel kind and size, resize mode and factor, noise kind, gray noise, codec,
bitrate, orders) are drawn once; the continuous parameters (kernel sigmas / angle / beta / cutoff, noise level,
JPEG quality) start at a random value and drift frame to frame, ``p_{i+1} = clip(p_i + r_{i+1})`` with
``r ~ U(-step, step)`` (RealBasicVSR Sec. 4; steps from the mmagic config). The resize factor is constant per
clip, so that all frames keep one size.

Everything random comes from the ``torch.Generator`` passed to :meth:`RealESRGANDegradation.__call__` (a numpy
generator is seeded from it for the parameters), so the same seed gives bit-identical LQ frames, compression
included.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from zoo.data.degradations.compression import VIDEO_CODECS, video_compress
from zoo.data.degradations.kernels import (
    NO_DRIFT,
    KernelParams,
    KernelSteps,
    drift as drift_values,
    sample_kernel_params,
    sample_sinc_params,
)
from zoo.data.degradations.ops import (
    JPEG_BACKENDS,
    RESIZE_MODES,
    add_gaussian_noise,
    add_poisson_noise,
    bicubic_downsample,
    check_gt_clip,
    filter_frames,
    jpeg_compress,
    quantize,
    resize,
    usm_sharp,
)
from zoo.errors import ConfigError, InputError

__all__ = ["BicubicDegradation", "DegradationParams", "RealESRGANDegradation", "StageParams", "degradation_config"]


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def degradation_config(degradation: object) -> dict:
    """Everything that decides a degradation's output: its class, its implementation ``VERSION`` and every public
    attribute (the complete configuration, not just ``scale``), as JSON-able values. Cached LQ frames are keyed by
    a hash of this, so changing any option, or the implementation, never reuses stale frames."""
    return {"class": type(degradation).__name__, "version": getattr(degradation, "VERSION", 1),
            **{k: _jsonable(v) for k, v in sorted(vars(degradation).items()) if not k.startswith("_")}}

_KERNEL_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)  # Real-ESRGAN: 2 * v + 1 for v in 3..10
_KERNEL_LIST = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_KERNEL_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


@dataclass
class StageParams:
    """Parameters of one degradation stage of a clip.

    Attributes:
        blur: per-frame kernels, or None when the (optional) blur is skipped.
        resize_scale: resize factor (stage 1: of the input size; stage 2: of the LQ size).
        resize_mode: one of ``area``, ``bilinear``, ``bicubic``.
        noise_kind: ``gaussian`` or ``poisson``.
        noise_level: ``(t,)`` Gaussian sigma in 8-bit levels, or Poisson scale.
        gray_noise: one noise map for the three channels.
        jpeg_quality: ``(t,)`` JPEG quality (stage 2: used in the final group).
    """

    blur: KernelParams | None
    resize_scale: float
    resize_mode: str
    noise_kind: str
    noise_level: np.ndarray
    gray_noise: bool
    jpeg_quality: np.ndarray


@dataclass
class DegradationParams:
    """All parameters of one clip's degradation (see :meth:`RealESRGANDegradation.sample_params`).

    Attributes:
        num_frames: t.
        first, second: the two stages.
        final_sinc: the final sinc filter, or None (identity).
        final_resize_mode: interpolation of the resize to the LQ size.
        compression_first: True: [JPEG + video] then [resize + sinc]; False: the other order.
        video_codec: codec, or None when video compression is skipped.
        video_bitrate: bits per frame.
    """

    num_frames: int
    first: StageParams
    second: StageParams
    final_sinc: KernelParams | None
    final_resize_mode: str
    compression_first: bool
    video_codec: str | None
    video_bitrate: int


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    value = tuple(float(v) for v in value)
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f"{name} must be a (low, high) pair with low <= high, got {value}")
    return value


def _probs(name: str, value: Sequence[float], length: int) -> tuple[float, ...]:
    value = tuple(float(v) for v in value)
    if len(value) != length or min(value) < 0 or sum(value) <= 0:
        raise ConfigError(f"{name} must be {length} non-negative probabilities, got {value}")
    return value


class RealESRGANDegradation:
    """Synthesize a real-world-like LQ clip from a GT clip: the zoo's torch variant in Real-ESRGAN's order with
    RealBasicVSR's drift and one video compression (see the module docstring; RealBasicVSR's own pipeline is
    :class:`zoo.data.degradations.RealBasicVSRDegradation`).

    Defaults are Real-ESRGAN's ``train_realesrgan_x4plus.yml`` values and RealBasicVSR's drift steps and video
    compression settings; parameter names follow the Real-ESRGAN option names.

    Args:
        scale: downsampling factor GT -> LQ.
        sharpen_input: degrade the USM-sharpened GT (BasicSR ``USMSharp`` weight 0.5, radius 50, threshold 10),
            as Real-ESRGAN and RealBasicVSR do.
        kernel_list, kernel_prob: stage-1 kernel kinds and probabilities (sinc excluded, see ``sinc_prob``).
        kernel_sizes: odd kernel sizes drawn uniformly (7..21).
        sinc_prob: stage-1 probability of a sinc kernel (0.1).
        blur_sigma, betag_range, betap_range: stage-1 kernel ranges ((0.2, 3), (0.5, 4), (1, 2)).
        resize_prob: stage-1 probabilities of up / down / keep ((0.2, 0.7, 0.1)).
        resize_range: stage-1 resize factor range ((0.15, 1.5)).
        gaussian_noise_prob: stage-1 probability of Gaussian (else Poisson) noise (0.5).
        noise_range: stage-1 Gaussian sigma range, 8-bit levels ((1, 30)).
        poisson_scale_range: stage-1 Poisson scale range ((0.05, 3)).
        gray_noise_prob: stage-1 probability of gray noise (0.4).
        jpeg_range: stage-1 JPEG quality range ((30, 95)).
        second_blur_prob: probability of the stage-2 blur (0.8).
        kernel_list2, kernel_prob2, sinc_prob2, blur_sigma2, betag_range2, betap_range2: stage-2 kernels
            (blur_sigma2 (0.2, 1.5)).
        resize_prob2, resize_range2: stage-2 resize ((0.3, 0.4, 0.3), (0.3, 1.2), relative to the LQ size).
        gaussian_noise_prob2, noise_range2, poisson_scale_range2, gray_noise_prob2: stage-2 noise
            (sigma (1, 25), Poisson (0.05, 2.5)).
        jpeg_range2: JPEG quality range of the final group ((30, 95)).
        final_sinc_prob: probability of the final sinc filter (0.8), cutoff in ``final_sinc_omega``
            ((pi/3, pi)).
        video_compression_prob: probability of the video compression (1.0, as RealBasicVSR).
        video_codecs, video_codec_prob: codecs and probabilities (libx264, mpeg4; equal).
        video_bitrate_range: bitrate range, bits per frame ((1e4, 1e5)).
        jpeg_backend: ``diffjpeg`` (BasicSR ``DiffJPEG``, as Real-ESRGAN; default) or ``cv2`` (OpenCV libjpeg,
            integer quality, as mmagic's RealBasicVSR pipeline; about 3x faster for the whole degradation on CPU).
        drift: let parameters drift frame to frame (False: constant per clip).
        sigma_step, rotation_step, betag_step, betap_step, omega_step: kernel drift steps (0.02, 0.31416,
            0.05, 0.1, 0.0628).
        noise_step: Gaussian sigma step, 8-bit levels (0.1); poisson_step: Poisson scale step (0.005).
        jpeg_step: JPEG quality step (3).

    Raises:
        ConfigError: inconsistent options (bad ranges, probabilities, codecs, scale < 1).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        sharpen_input: bool = True,
        kernel_list: Sequence[str] = _KERNEL_LIST,
        kernel_prob: Sequence[float] = _KERNEL_PROB,
        kernel_sizes: Sequence[int] = _KERNEL_SIZES,
        sinc_prob: float = 0.1,
        blur_sigma: Sequence[float] = (0.2, 3.0),
        betag_range: Sequence[float] = (0.5, 4.0),
        betap_range: Sequence[float] = (1.0, 2.0),
        resize_prob: Sequence[float] = (0.2, 0.7, 0.1),
        resize_range: Sequence[float] = (0.15, 1.5),
        gaussian_noise_prob: float = 0.5,
        noise_range: Sequence[float] = (1.0, 30.0),
        poisson_scale_range: Sequence[float] = (0.05, 3.0),
        gray_noise_prob: float = 0.4,
        jpeg_range: Sequence[float] = (30.0, 95.0),
        second_blur_prob: float = 0.8,
        kernel_list2: Sequence[str] = _KERNEL_LIST,
        kernel_prob2: Sequence[float] = _KERNEL_PROB,
        sinc_prob2: float = 0.1,
        blur_sigma2: Sequence[float] = (0.2, 1.5),
        betag_range2: Sequence[float] = (0.5, 4.0),
        betap_range2: Sequence[float] = (1.0, 2.0),
        resize_prob2: Sequence[float] = (0.3, 0.4, 0.3),
        resize_range2: Sequence[float] = (0.3, 1.2),
        gaussian_noise_prob2: float = 0.5,
        noise_range2: Sequence[float] = (1.0, 25.0),
        poisson_scale_range2: Sequence[float] = (0.05, 2.5),
        gray_noise_prob2: float = 0.4,
        jpeg_range2: Sequence[float] = (30.0, 95.0),
        final_sinc_prob: float = 0.8,
        final_sinc_omega: Sequence[float] = (math.pi / 3, math.pi),
        video_compression_prob: float = 1.0,
        video_codecs: Sequence[str] = ("libx264", "mpeg4"),
        video_codec_prob: Sequence[float] | None = None,
        video_bitrate_range: Sequence[float] = (1e4, 1e5),
        jpeg_backend: str = "diffjpeg",
        drift: bool = True,
        sigma_step: float = 0.02,
        rotation_step: float = 0.31416,
        betag_step: float = 0.05,
        betap_step: float = 0.1,
        omega_step: float = 0.0628,
        noise_step: float = 0.1,
        poisson_step: float = 0.005,
        jpeg_step: float = 3.0,
    ) -> None:
        if int(scale) != scale or scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.sharpen_input = bool(sharpen_input)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not self.kernel_sizes or any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes must be odd positive sizes, got {list(kernel_sizes)}")
        self.kernel_list = tuple(kernel_list)
        self.kernel_prob = _probs("kernel_prob", kernel_prob, len(self.kernel_list))
        self.kernel_list2 = tuple(kernel_list2)
        self.kernel_prob2 = _probs("kernel_prob2", kernel_prob2, len(self.kernel_list2))
        self.sinc_prob, self.sinc_prob2 = float(sinc_prob), float(sinc_prob2)
        self.blur_sigma, self.blur_sigma2 = _pair("blur_sigma", blur_sigma), _pair("blur_sigma2", blur_sigma2)
        self.betag_range, self.betag_range2 = _pair("betag_range", betag_range), _pair("betag_range2", betag_range2)
        self.betap_range, self.betap_range2 = _pair("betap_range", betap_range), _pair("betap_range2", betap_range2)
        self.resize_prob = _probs("resize_prob", resize_prob, 3)
        self.resize_prob2 = _probs("resize_prob2", resize_prob2, 3)
        self.resize_range = _pair("resize_range", resize_range)
        self.resize_range2 = _pair("resize_range2", resize_range2)
        if self.resize_range[0] <= 0 or self.resize_range2[0] <= 0:
            raise ConfigError("resize ranges must be positive")
        self.gaussian_noise_prob, self.gaussian_noise_prob2 = float(gaussian_noise_prob), float(gaussian_noise_prob2)
        self.noise_range, self.noise_range2 = _pair("noise_range", noise_range), _pair("noise_range2", noise_range2)
        self.poisson_scale_range = _pair("poisson_scale_range", poisson_scale_range)
        self.poisson_scale_range2 = _pair("poisson_scale_range2", poisson_scale_range2)
        self.gray_noise_prob, self.gray_noise_prob2 = float(gray_noise_prob), float(gray_noise_prob2)
        self.jpeg_range, self.jpeg_range2 = _pair("jpeg_range", jpeg_range), _pair("jpeg_range2", jpeg_range2)
        for name, (low, high) in (("jpeg_range", self.jpeg_range), ("jpeg_range2", self.jpeg_range2)):
            if low < 1 or high > 100:
                raise ConfigError(f"{name} must lie in [1, 100], got {(low, high)}")
        self.second_blur_prob = float(second_blur_prob)
        self.final_sinc_prob = float(final_sinc_prob)
        self.final_sinc_omega = _pair("final_sinc_omega", final_sinc_omega)
        self.video_compression_prob = float(video_compression_prob)
        self.video_codecs = tuple(video_codecs)
        for codec in self.video_codecs:
            if codec not in VIDEO_CODECS:
                raise ConfigError(f"unknown video codec {codec!r}; expected one of {VIDEO_CODECS}")
        if not self.video_codecs:
            raise ConfigError("video_codecs must not be empty")
        self.video_codec_prob = (
            _probs("video_codec_prob", video_codec_prob, len(self.video_codecs))
            if video_codec_prob is not None else (1.0,) * len(self.video_codecs))
        self.video_bitrate_range = _pair("video_bitrate_range", video_bitrate_range)
        if jpeg_backend not in JPEG_BACKENDS:
            raise ConfigError(f"unknown jpeg_backend {jpeg_backend!r}; expected one of {JPEG_BACKENDS}")
        self.jpeg_backend = jpeg_backend
        self.drift = bool(drift)
        self.kernel_steps = (KernelSteps(sigma=sigma_step, theta=rotation_step, betag=betag_step, betap=betap_step,
                                         omega=omega_step) if drift else NO_DRIFT)
        self.noise_step = float(noise_step) if drift else 0.0
        self.poisson_step = float(poisson_step) if drift else 0.0
        self.jpeg_step = float(jpeg_step) if drift else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, drift={self.drift})"

    # ------------------------------------------------------------------------------------------ sampling
    def _sample_stage(self, rng: np.random.Generator, t: int, second: bool) -> StageParams:
        if not second or rng.uniform() < self.second_blur_prob:
            blur = sample_kernel_params(
                rng, t,
                kernel_list=self.kernel_list2 if second else self.kernel_list,
                kernel_prob=self.kernel_prob2 if second else self.kernel_prob,
                kernel_sizes=self.kernel_sizes,
                sinc_prob=self.sinc_prob2 if second else self.sinc_prob,
                sigma_range=self.blur_sigma2 if second else self.blur_sigma,
                betag_range=self.betag_range2 if second else self.betag_range,
                betap_range=self.betap_range2 if second else self.betap_range,
                steps=self.kernel_steps)
        else:
            blur = None
        resize_prob = np.asarray(self.resize_prob2 if second else self.resize_prob)
        low, high = self.resize_range2 if second else self.resize_range
        direction = int(rng.choice(3, p=resize_prob / resize_prob.sum()))  # up, down, keep
        if direction == 0:
            resize_scale = rng.uniform(1.0, max(1.0, high))
        elif direction == 1:
            resize_scale = rng.uniform(min(low, 1.0), 1.0)
        else:
            resize_scale = 1.0
        resize_mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
        gaussian_prob = self.gaussian_noise_prob2 if second else self.gaussian_noise_prob
        if rng.uniform() < gaussian_prob:
            noise_kind = "gaussian"
            low, high = self.noise_range2 if second else self.noise_range
            noise_level = drift_values(rng, rng.uniform(low, high), self.noise_step, low, high, t)
        else:
            noise_kind = "poisson"
            low, high = self.poisson_scale_range2 if second else self.poisson_scale_range
            noise_level = drift_values(rng, rng.uniform(low, high), self.poisson_step, low, high, t)
        gray_noise = bool(rng.uniform() < (self.gray_noise_prob2 if second else self.gray_noise_prob))
        low, high = self.jpeg_range2 if second else self.jpeg_range
        jpeg_quality = drift_values(rng, rng.uniform(low, high), self.jpeg_step, low, high, t)
        return StageParams(blur=blur, resize_scale=float(resize_scale), resize_mode=resize_mode,
                           noise_kind=noise_kind, noise_level=noise_level, gray_noise=gray_noise,
                           jpeg_quality=jpeg_quality)

    def sample_params(self, num_frames: int, rng: np.random.Generator) -> DegradationParams:
        """Draw the degradation parameters of one clip.

        Args:
            num_frames: t, the number of frames of the clip.
            rng: numpy generator (seeded per clip).

        Returns:
            :class:`DegradationParams` (per-frame arrays have shape ``(t,)``).
        """
        first = self._sample_stage(rng, num_frames, second=False)
        second = self._sample_stage(rng, num_frames, second=True)
        final_sinc = None
        if rng.uniform() < self.final_sinc_prob:
            final_sinc = sample_sinc_params(rng, num_frames, kernel_sizes=self.kernel_sizes,
                                            omega_range=self.final_sinc_omega, omega_step=self.kernel_steps.omega)
        final_resize_mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
        compression_first = bool(rng.uniform() < 0.5)
        video_codec = None
        if rng.uniform() < self.video_compression_prob:
            prob = np.asarray(self.video_codec_prob)
            video_codec = self.video_codecs[int(rng.choice(len(self.video_codecs), p=prob / prob.sum()))]
        low, high = self.video_bitrate_range
        video_bitrate = int(rng.integers(int(low), int(high) + 1))
        return DegradationParams(num_frames=num_frames, first=first, second=second, final_sinc=final_sinc,
                                 final_resize_mode=final_resize_mode, compression_first=compression_first,
                                 video_codec=video_codec, video_bitrate=video_bitrate)

    # ---------------------------------------------------------------------------------------- applying
    @staticmethod
    def _noise(x: torch.Tensor, stage: StageParams, generator: torch.Generator) -> torch.Tensor:
        if stage.noise_kind == "gaussian":
            return add_gaussian_noise(x, stage.noise_level, gray=stage.gray_noise, generator=generator)
        return add_poisson_noise(x, stage.noise_level, gray=stage.gray_noise, generator=generator)

    def apply(self, gt: torch.Tensor, params: DegradationParams, generator: torch.Generator) -> torch.Tensor:
        """Degrade a clip with given parameters (the generator only draws the noise).

        Args:
            gt: ``(t, 3, H, W)`` float32 in [0, 1], H and W divisible by ``scale``.
            params: from :meth:`sample_params` with the same t.
            generator: torch generator for the noise.

        Returns:
            lq ``(t, 3, H / scale, W / scale)`` float32 in [0, 1], 8-bit levels.
        """
        num_frames, _, height, width = gt.shape
        if params.num_frames != num_frames:
            raise InputError(f"degradation parameters are for {params.num_frames} frames, the clip has {num_frames}")
        lq_size = (height // self.scale, width // self.scale)
        x = gt.float()
        if self.sharpen_input:
            x = usm_sharp(x)
        # stage 1
        stage = params.first
        x = filter_frames(x, stage.blur.kernels().to(x.device))
        x = resize(x, (int(height * stage.resize_scale), int(width * stage.resize_scale)), stage.resize_mode)
        x = self._noise(x, stage, generator)
        x = jpeg_compress(x, stage.jpeg_quality, backend=self.jpeg_backend)
        # stage 2
        stage = params.second
        if stage.blur is not None:
            x = filter_frames(x, stage.blur.kernels().to(x.device))
        x = resize(x, (int(lq_size[0] * stage.resize_scale), int(lq_size[1] * stage.resize_scale)),
                   stage.resize_mode)
        x = self._noise(x, stage, generator)
        # final group, in random order: [resize to LQ size + sinc] and [JPEG + video compression]
        if params.compression_first:
            x = self._compress(x, params)
            x = self._resize_sinc(x, params, lq_size)
        else:
            x = self._resize_sinc(x, params, lq_size)
            x = self._compress(x, params)
        return quantize(x)

    def _compress(self, x: torch.Tensor, params: DegradationParams) -> torch.Tensor:
        x = jpeg_compress(x, params.second.jpeg_quality, backend=self.jpeg_backend)
        if params.video_codec is not None:
            x = video_compress(x, codec=params.video_codec, bitrate=params.video_bitrate)
        return x

    @staticmethod
    def _resize_sinc(x: torch.Tensor, params: DegradationParams, lq_size: tuple[int, int]) -> torch.Tensor:
        x = resize(x, lq_size, params.final_resize_mode)
        if params.final_sinc is not None:
            x = filter_frames(x, params.final_sinc.kernels().to(x.device))
        return x

    def __call__(self, gt: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Synthesize the LQ clip.

        Args:
            gt: ``(t, 3, H, W)`` float32 in [0, 1]; H and W divisible by ``scale``.
            generator: a CPU ``torch.Generator`` seeded per clip; the same seed gives bit-identical output.

        Returns:
            lq ``(t, 3, H / scale, W / scale)`` float32 in [0, 1] (8-bit levels).

        Raises:
            InputError: wrong shape, or a size not divisible by ``scale``.
        """
        height, width = check_gt_clip(gt, self.scale)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        params = self.sample_params(gt.shape[0], np.random.default_rng(seed))
        with torch.no_grad():
            return self.apply(gt, params, generator)


class BicubicDegradation:
    """The classic BI protocol as a degradation callable: LQ = MATLAB ``imresize`` bicubic x1/scale of the GT,
    rounded to 8-bit levels (see :func:`zoo.data.degradations.ops.bicubic_downsample`). Deterministic; the generator
    is accepted for interface compatibility with :class:`RealESRGANDegradation` and not used.

    Args:
        scale: downsampling factor.
    """

    #: Implementation version (2: MATLAB ``imresize``; 1 was torch's antialiased bicubic).
    VERSION = 2

    def __init__(self, *, scale: int = 4) -> None:
        if int(scale) != scale or scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"

    def __call__(self, gt: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Args: gt ``(t, 3, H, W)`` float32 in [0, 1]. Returns: lq ``(t, 3, H / scale, W / scale)`` in [0, 1].

        Raises:
            InputError: wrong rank or a size not divisible by ``scale``.
        """
        return bicubic_downsample(gt, self.scale)
