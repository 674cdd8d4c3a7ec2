"""RealBasicVSR's training degradation, operation for operation as the official pipeline.

Source: RealBasicVSR (Chan et al., "Investigating Tradeoffs in Real-World Video Super-Resolution", CVPR 2022, Sec. 4
and Sec. 5.1); official train pipeline: mmagic ``configs/real_basicvsr/
realbasicvsr_wogan-c64b20-2x30x8_8xb2-lr1e-4-300k_reds.py`` (the GAN stage ``realbasicvsr_c64b20-1x30x8_8xb1-
lr5e-5-150k_reds.py`` inherits it), operations in ``mmagic/datasets/transforms/random_degradations.py`` and
``blur_kernels.py`` (commit 0a560bba). The official code is read, not copied: this is our implementation of the
same operations, with the same libraries (OpenCV, PyAV, BasicSR's kernel builders).

Order of operations (:data:`OPERATIONS`), all on RGB frames in [0, 255]::

    unsharp_masking -> blur1 -> resize1 -> noise1 -> jpeg1 -> video1
    -> blur2 (p 0.8) -> resize2 -> noise2 -> jpeg2
    -> shuffle of two groups (each order with p 0.5): [video2]  and  [resize3 (to the LQ size) -> sinc (p 0.8)]
    -> clip to [0, 255]

The parameter table (:data:`OFFICIAL_TABLE`) holds the official config's values under its parameter names.
Behaviour that follows from the official code rather than its config, reproduced on purpose:

* per clip, the discrete choices (kernel kind and size, resize mode, interpolation and direction, noise kind, gray
  noise, codec, bitrate, shuffle order) are drawn once; continuous parameters start at a random value and drift
  frame to frame by ``U(-step, step)``, clipped to their range (Sec. 4), the resize factor included, so frames of
  a clip get different sizes (even sizes) until the next video compression, which rescales every frame to the
  first frame's size;
* resize2 is relative to the current frame size (not to the LQ size, as in Real-ESRGAN);
* generalized-Gaussian and plateau kernels: the drifting shape beta is drawn in its full range, and each frame's
  kernel then uses a fresh ``U(beta, 1)`` value (the official kernel builder is called with a one-point range and
  re-draws beta between it and 1);
* sinc kernels inside blur1 / blur2 use Real-ESRGAN's cutoff range (pi/3..pi below 13 px, pi/5..pi otherwise);
  kernels are not padded to 21 px;
* Poisson noise is computed on the 0..255 scale (``poisson(x * v) / v - x`` with x in levels and v the number of
  distinct levels rounded up to a power of two): for the same ``poisson_scale`` it is sqrt(255) times weaker than
  Real-ESRGAN's, computed on the 0..1 scale; gray noise uses OpenCV's luma of the RGB frame;
* JPEG is OpenCV's, fed the RGB frame as if it were BGR (the official loader gives RGB and the transform does not
  swap channels), integer quality rounded after each drift step; input levels are rounded and saturated to uint8
  (what OpenCV does with float input);
* data types follow the official ones: JPEG returns uint8, so the resize / sinc that may follow it work on uint8
  and round, video compression returns float; the output is only clipped, so it is on 8-bit levels except when
  the last group is [resize3, sinc] after a float stage.

One departure, switchable: ``deterministic_codec=True`` (default) runs the encoders single-threaded and without
x264's mbtree, which makes the LQ bit-identical for a seed (see :mod:`zoo.data.degradations.compression`);
``False`` uses the encoders' defaults, as the official pipeline.

Everything random comes from one ``numpy.random.Generator`` seeded from the ``torch.Generator`` passed to
:meth:`RealBasicVSRDegradation.__call__` (the official code uses the global numpy / ``random`` states; the
distributions are the same, the draws are not).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping

import cv2
import numpy as np
import torch
from basicsr.data.degradations import (
    bivariate_Gaussian,
    bivariate_generalized_Gaussian,
    bivariate_plateau,
    circular_lowpass_kernel,
)
from basicsr.utils.img_process_util import usm_sharp as basicsr_usm_sharp
from einops import rearrange

from zoo.data.degradations.compression import VIDEO_CODECS, encode_decode
from zoo.data.degradations.ops import check_gt_clip
from zoo.errors import ConfigError

__all__ = ["OFFICIAL_TABLE", "OPERATIONS", "RealBasicVSRDegradation"]

_KERNEL_SIZES = [7, 9, 11, 13, 15, 17, 19, 21]
_KERNEL_LIST = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc"]
_KERNEL_PROB = [0.405, 0.225, 0.108, 0.027, 0.108, 0.027, 0.1]
_THIRD = 1 / 3.0


def _blur(sigma: list[float], **extra: object) -> dict:
    return dict(**extra, kernel_size=_KERNEL_SIZES, kernel_list=_KERNEL_LIST, kernel_prob=_KERNEL_PROB,
                sigma_x=sigma, sigma_y=sigma, rotate_angle=[-3.1416, 3.1416], beta_gaussian=[0.5, 4],
                beta_plateau=[1, 2], sigma_x_step=0.02, sigma_y_step=0.02, rotate_angle_step=0.31416,
                beta_gaussian_step=0.05, beta_plateau_step=0.1, omega_step=0.0628)


def _noise(sigma: list[float], scale: list[float]) -> dict:
    return dict(noise_type=["gaussian", "poisson"], noise_prob=[0.5, 0.5], gaussian_sigma=sigma,
                gaussian_gray_noise_prob=0.4, poisson_scale=scale, poisson_gray_noise_prob=0.4,
                gaussian_sigma_step=0.1, poisson_scale_step=0.005)


_VIDEO = dict(codec=["libx264", "h264", "mpeg4"], codec_prob=[_THIRD, _THIRD, _THIRD], bitrate=[1e4, 1e5])
_RESIZE_OPT = dict(resize_opt=["bilinear", "area", "bicubic"], resize_prob=[_THIRD, _THIRD, _THIRD])

OFFICIAL_TABLE: dict[str, dict] = {
    "unsharp_masking": dict(kernel_size=51, sigma=0, weight=0.5, threshold=10),
    "blur1": _blur([0.2, 3]),
    "resize1": dict(resize_mode_prob=[0.2, 0.7, 0.1], resize_scale=[0.15, 1.5], **_RESIZE_OPT,
                    resize_step=0.015, is_size_even=True),
    "noise1": _noise([1, 30], [0.05, 3]),
    "jpeg1": dict(quality=[30, 95], quality_step=3),
    "video1": dict(_VIDEO),
    "blur2": _blur([0.2, 1.5], prob=0.8),
    "resize2": dict(resize_mode_prob=[0.3, 0.4, 0.3], resize_scale=[0.3, 1.2], **_RESIZE_OPT,
                    resize_step=0.03, is_size_even=True),
    "noise2": _noise([1, 25], [0.05, 2.5]),
    "jpeg2": dict(quality=[30, 95], quality_step=3),
    "video2": dict(_VIDEO),
    "resize3": dict(_RESIZE_OPT),  # target size: the LQ size, GT / scale (official: (64, 64) for 256 px GT crops)
    "sinc": dict(prob=0.8, kernel_size=_KERNEL_SIZES, kernel_list=["sinc"], kernel_prob=[1],
                 omega=[3.1416 / 3, 3.1416], omega_step=0.0628),
}
"""The official config's parameters per operation (mmagic names and values; ``1 / 3.0`` as written there)."""

OPERATIONS: tuple = ("unsharp_masking", "blur1", "resize1", "noise1", "jpeg1", "video1", "blur2", "resize2",
                     "noise2", "jpeg2", ("shuffle", (("video2",), ("resize3", "sinc"))), "clip")
"""Order of operations; ``("shuffle", groups)`` applies the groups in a random order (each with p = 1 / 2)."""

_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}
_KINDS = {"blur1": "blur", "blur2": "blur", "sinc": "blur", "resize1": "resize", "resize2": "resize",
          "resize3": "resize", "noise1": "noise", "noise2": "noise", "jpeg1": "jpeg", "jpeg2": "jpeg",
          "video1": "video", "video2": "video", "unsharp_masking": "unsharp_masking"}
Frames = list[np.ndarray]


def _choice(rng: np.random.Generator, options: list, prob: list[float]) -> object:
    prob = np.asarray(prob, dtype=np.float64)
    return options[int(rng.choice(len(options), p=prob / prob.sum()))]


def _skipped(rng: np.random.Generator, params: Mapping) -> bool:
    return bool(rng.uniform() > params.get("prob", 1))


def _kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float,
            omega: float) -> np.ndarray:
    if kind == "sinc":
        return circular_lowpass_kernel(omega, size, pad_to=0)
    isotropic = kind in ("iso", "generalized_iso", "plateau_iso")
    if isotropic:
        sigma_y, theta = sigma_x, 0.0
    if kind in ("iso", "aniso"):
        return bivariate_Gaussian(size, sigma_x, sigma_y, theta, isotropic=isotropic)
    if kind.startswith("generalized"):
        return bivariate_generalized_Gaussian(size, sigma_x, sigma_y, theta, beta, isotropic=isotropic)
    return bivariate_plateau(size, sigma_x, sigma_y, theta, beta, isotropic=isotropic)


class _Walk:
    """A parameter drawn in ``[low, high]`` that drifts by ``U(-step, step)`` after each frame, clipped."""

    def __init__(self, rng: np.random.Generator, bounds: list[float], step: float) -> None:
        self.rng, self.low, self.high, self.step = rng, float(bounds[0]), float(bounds[-1]), float(step)
        self.value = float(rng.uniform(self.low, self.high))

    def advance(self) -> None:
        self.value = float(np.clip(self.value + self.rng.uniform(-self.step, self.step), self.low, self.high))


class RealBasicVSRDegradation:
    """Synthesize a real-world-like LQ clip from a GT clip with RealBasicVSR's official training degradation
    (order, parameters and behaviour in the module docstring).

    Args:
        scale: downsampling factor GT -> LQ (resize3's target is GT / scale; the official config: 4).
        overrides: per-operation parameter updates merged into :data:`OFFICIAL_TABLE`, e.g.
            ``{"video1": {"bitrate": [5e4, 1e5]}}`` (keys of the table and its parameter names only).
        deterministic_codec: bit-identical video compression for a seed (default); False: the encoders'
            default options, as the official pipeline.

    Attributes:
        table: the parameters in use (the official table with ``overrides`` applied).

    Raises:
        ConfigError: a scale below 1, an unknown operation or parameter in ``overrides``, an unknown codec,
            kernel kind or interpolation.
    """

    VERSION = 1

    def __init__(self, *, scale: int = 4, overrides: dict[str, dict] | None = None,
                 deterministic_codec: bool = True) -> None:
        if int(scale) != scale or scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.deterministic_codec = bool(deterministic_codec)
        table = copy.deepcopy(OFFICIAL_TABLE)
        for name, update in (overrides or {}).items():
            if name not in table:
                raise ConfigError(f"unknown RealBasicVSR degradation operation {name!r}; expected one of "
                                  f"{list(table)}")
            optional = {"prob"} | ({"omega"} if _KINDS[name] == "blur" else set())
            unknown = set(update) - set(table[name]) - optional
            if unknown:
                raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for {name!r}; expected "
                                  f"{sorted(set(table[name]) | optional)}")
            table[name].update(copy.deepcopy(dict(update)))
        self._check(table)
        self.table = table

    @staticmethod
    def _check(table: dict[str, dict]) -> None:
        for name, params in table.items():
            kind = _KINDS[name]
            if kind == "blur":
                unknown = set(params["kernel_list"]) - set(_KERNEL_LIST)
                if unknown or len(params["kernel_list"]) != len(params["kernel_prob"]):
                    raise ConfigError(f"{name}: kernel_list {params['kernel_list']} must be kinds of {_KERNEL_LIST} "
                                      f"with one probability each")
                if any(int(k) % 2 == 0 for k in params["kernel_size"]):
                    raise ConfigError(f"{name}: kernel sizes must be odd, got {params['kernel_size']}")
            if kind == "resize" and set(params["resize_opt"]) - set(_INTERPOLATION):
                raise ConfigError(f"{name}: resize_opt must be among {sorted(_INTERPOLATION)}, got "
                                  f"{params['resize_opt']}")
            if kind == "video" and set(params["codec"]) - set(VIDEO_CODECS):
                raise ConfigError(f"{name}: codecs must be among {VIDEO_CODECS}, got {params['codec']}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, deterministic_codec={self.deterministic_codec})"

    # ------------------------------------------------------------------------------------------ operations
    @staticmethod
    def _unsharp_masking(frames: Frames, params: Mapping, rng: np.random.Generator) -> Frames:
        # BasicSR's OpenCV USM on [0, 1] equals mmagic's UnsharpMasking on [0, 255] up to float rounding
        # (threshold in 8-bit levels in both).
        radius, weight, threshold = int(params["kernel_size"]) - 1, params["weight"], params["threshold"]
        return [basicsr_usm_sharp(frame / 255.0, weight=weight, radius=radius, threshold=threshold).astype(
            np.float32) * 255.0 for frame in frames]

    @staticmethod
    def _blur(frames: Frames, params: Mapping, rng: np.random.Generator) -> Frames:
        if _skipped(rng, params):
            return frames
        kind = str(_choice(rng, list(params["kernel_list"]), params["kernel_prob"]))
        size = int(_choice(rng, list(params["kernel_size"]), [1.0] * len(params["kernel_size"])))
        sigma_x = _Walk(rng, params.get("sigma_x", [0, 0]), params.get("sigma_x_step", 0))
        sigma_y = _Walk(rng, params.get("sigma_y", [0, 0]), params.get("sigma_y_step", 0))
        theta = _Walk(rng, params.get("rotate_angle", [-math.pi, math.pi]), params.get("rotate_angle_step", 0))
        beta_g = _Walk(rng, params.get("beta_gaussian", [0.5, 4]), params.get("beta_gaussian_step", 0))
        beta_p = _Walk(rng, params.get("beta_plateau", [1, 2]), params.get("beta_plateau_step", 0))
        omega_range = params.get("omega") or ([math.pi / 3, math.pi] if size < 13 else [math.pi / 5, math.pi])
        omega = _Walk(rng, omega_range, params.get("omega_step", 0))
        walks = (sigma_x, sigma_y, theta, beta_g, beta_p, omega)
        out = []
        for frame in frames:
            beta = beta_g.value if kind.startswith("generalized") else beta_p.value
            if kind.startswith(("generalized", "plateau")):
                rng.uniform()  # the official builder's branch draw; both branches give U(beta, 1)
                beta = float(rng.uniform(min(beta, 1.0), max(beta, 1.0)))
            kernel = _kernel(kind, size, sigma_x.value, sigma_y.value, theta.value, beta, omega.value)
            out.append(cv2.filter2D(frame, -1, kernel))
            for walk in walks:
                walk.advance()
        return out

    @staticmethod
    def _resize(frames: Frames, params: Mapping, rng: np.random.Generator,
                target: tuple[int, int] | None = None) -> Frames:
        if _skipped(rng, params):
            return frames
        interpolation = _INTERPOLATION[str(_choice(rng, list(params["resize_opt"]), params["resize_prob"]))]
        if target is not None:
            return [cv2.resize(frame, target[::-1], interpolation=interpolation) for frame in frames]
        height, width = frames[0].shape[:2]
        low, high = params["resize_scale"]
        mode = _choice(rng, ["up", "down", "keep"], params["resize_mode_prob"])
        factor = float(rng.uniform(1, high)) if mode == "up" else float(rng.uniform(low, 1)) if mode == "down" else 1.0
        step, even = float(params.get("resize_step", 0)), bool(params.get("is_size_even", False))
        out = []
        for frame in frames:
            h_out, w_out = height * factor, width * factor
            if even:
                h_out, w_out = 2 * (h_out // 2), 2 * (w_out // 2)
            out.append(cv2.resize(frame, (int(w_out), int(h_out)), interpolation=interpolation))
            if step:
                factor = float(np.clip(factor + rng.uniform(-step, step), low, high))
        return out

    @staticmethod
    def _noise(frames: Frames, params: Mapping, rng: np.random.Generator) -> Frames:
        if _skipped(rng, params):
            return frames
        gaussian = str(_choice(rng, list(params["noise_type"]), params["noise_prob"])) == "gaussian"
        if gaussian:
            level = _Walk(rng, params["gaussian_sigma"], params.get("gaussian_sigma_step", 0))
            gray = bool(rng.uniform() < params["gaussian_gray_noise_prob"])
        else:
            level = _Walk(rng, params["poisson_scale"], params.get("poisson_scale_step", 0))
            gray = bool(rng.uniform() < params["poisson_gray_noise_prob"])
        out = []
        for frame in frames:
            if gaussian:
                noise = rng.standard_normal(frame.shape).astype(np.float32) * np.float32(level.value)
                if gray:
                    noise = noise[:, :, :1]
                out.append(frame + noise)
            else:
                levels = np.float32(frame)
                if gray:
                    levels = cv2.cvtColor(np.ascontiguousarray(levels[..., ::-1]), cv2.COLOR_BGR2GRAY)[..., None]
                levels = np.clip(levels.round(), 0, 255)
                distinct = 2 ** np.ceil(np.log2(len(np.unique(levels))))
                noise = rng.poisson(levels * distinct).astype(np.float32) / np.float32(distinct) - levels
                out.append(frame + noise * np.float32(level.value))
            level.advance()
        return out

    @staticmethod
    def _jpeg(frames: Frames, params: Mapping, rng: np.random.Generator) -> Frames:
        if _skipped(rng, params):
            return frames
        low, high = params["quality"]
        step = float(params.get("quality_step", 0))
        quality = round(rng.uniform(low, high))
        out = []
        for frame in frames:
            levels = frame if frame.dtype == np.uint8 else np.clip(np.round(frame), 0, 255).astype(np.uint8)
            ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(levels), [int(cv2.IMWRITE_JPEG_QUALITY),
                                                                               int(quality)])
            if not ok:
                raise RuntimeError(f"OpenCV could not JPEG-encode a {levels.shape} frame")
            out.append(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
            quality = round(float(np.clip(quality + rng.uniform(-step, step), low, high)))
        return out

    def _video(self, frames: Frames, params: Mapping, rng: np.random.Generator) -> Frames:
        if _skipped(rng, params):
            return frames
        codec = str(_choice(rng, list(params["codec"]), params["codec_prob"]))
        low, high = params["bitrate"]
        bitrate = int(rng.integers(int(low), int(high) + 1))
        decoded = encode_decode([frame.astype(np.uint8) for frame in frames], codec=codec, bitrate=bitrate,
                                deterministic=self.deterministic_codec)
        return [frame.astype(np.float32) for frame in decoded]

    # --------------------------------------------------------------------------------------------- pipeline
    def apply(self, frames: Frames, rng: np.random.Generator, lq_size: tuple[int, int],
              trace: Callable[[str, Frames], None] | None = None) -> Frames:
        """Run :data:`OPERATIONS` on a clip.

        Args:
            frames: t ``(H, W, 3)`` float32 RGB arrays in [0, 255] (the GT clip).
            rng: the clip's numpy generator.
            lq_size: ``(h, w)`` of the LQ frames (resize3's target).
            trace: called with each operation's name and its output frames, in order (for tests and debugging).

        Returns:
            t ``(h, w, 3)`` float32 arrays in [0, 255].
        """
        def run(name: str, frames: Frames) -> Frames:
            kind = _KINDS.get(name, name)
            params = self.table.get(name, {})
            if kind == "clip":
                frames = [np.clip(frame.astype(np.float32), 0, 255) for frame in frames]
            elif kind == "resize":
                frames = self._resize(frames, params, rng, lq_size if name == "resize3" else None)
            elif kind == "video":
                frames = self._video(frames, params, rng)
            else:
                frames = getattr(self, f"_{kind}")(frames, params, rng)
            if trace is not None:
                trace(name, frames)
            return frames

        for operation in OPERATIONS:
            if isinstance(operation, tuple):
                _, groups = operation
                for index in rng.permutation(len(groups)):
                    for name in groups[index]:
                        frames = run(name, frames)
            else:
                frames = run(operation, frames)
        return frames

    def __call__(self, gt: torch.Tensor, generator: torch.Generator,
                 trace: Callable[[str, Frames], None] | None = None) -> torch.Tensor:
        """Synthesize the LQ clip.

        Args:
            gt: ``(t, 3, H, W)`` float32 RGB in [0, 1], H and W divisible by ``scale`` (rounded to 8-bit levels
                first: the official pipeline degrades 8-bit frames).
            generator: a CPU ``torch.Generator`` seeded per clip; the same seed gives the same LQ (bit-identical
                with ``deterministic_codec``).
            trace: see :meth:`apply`.

        Returns:
            lq ``(t, 3, H / scale, W / scale)`` float32 in [0, 1].

        Raises:
            InputError: wrong shape, or a size not divisible by ``scale``.
        """
        height, width = check_gt_clip(gt, self.scale)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        levels = rearrange(gt.detach().float().cpu().clamp(0, 1) * 255.0, "t c h w -> t h w c").round().numpy()
        frames = [np.ascontiguousarray(frame) for frame in levels]
        out = self.apply(frames, np.random.default_rng(seed), (height // self.scale, width // self.scale), trace)
        lq = torch.from_numpy(np.stack(out)) / 255.0
        return rearrange(lq, "t h w c -> t c h w").to(gt.device).contiguous()
