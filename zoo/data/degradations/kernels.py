"""Blur kernels with parameters that drift from frame to frame.

Kernel families and sampling ranges follow Real-ESRGAN (Wang et al., ICCVW 2021, Sec. 3.1 "Blur" and
"Sinc filters"; xinntao/Real-ESRGAN ``realesrgan/data/realesrgan_dataset.py``): isotropic / anisotropic
Gaussian, generalized Gaussian, plateau, and the 2D sinc (circular low-pass) filter. The kernels themselves are
built by BasicSR's deterministic builders (``basicsr.data.degradations.bivariate_Gaussian``,
``bivariate_generalized_Gaussian``, ``bivariate_plateau``, ``circular_lowpass_kernel``).
We do not call ``basicsr.data.degradations.random_mixed_kernels``: it samples from the global ``random`` /
``np.random`` state and cannot take explicit per-frame parameters; here every random number comes from a
``np.random.Generator`` seeded per clip, so the same seed gives the same kernels.

Temporal drift (RealBasicVSR, Chan et al., CVPR 2022, Sec. 4 "stochastic degradation"; mmagic
``mmagic/datasets/transforms/random_degradations.py`` ``RandomBlur``): the kernel type and size are drawn once
per clip, the continuous parameters p start at a random value and follow ``p_{i+1} = clip(p_i + r_{i+1})`` with
``r ~ U(-step, step)``, clipped to the sampling range.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from basicsr.data.degradations import (
    bivariate_Gaussian,
    bivariate_generalized_Gaussian,
    bivariate_plateau,
    circular_lowpass_kernel,
)

from zoo.errors import ConfigError

__all__ = ["KERNEL_TYPES", "KernelParams", "KernelSteps", "drift", "sample_kernel_params", "sample_sinc_params"]

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")
"""Kernel families: Gaussian, generalized Gaussian and plateau (each isotropic or anisotropic), and sinc."""


@dataclass(frozen=True)
class KernelSteps:
    """Largest per-frame drift step of each kernel parameter (RealBasicVSR / mmagic ``RandomBlur`` values).

    Attributes:
        sigma: step of sigma_x and sigma_y, pixels (0.02).
        theta: step of the rotation angle, radians (0.31416 = pi / 10).
        betag: step of the generalized-Gaussian shape beta (0.05).
        betap: step of the plateau shape beta (0.1).
        omega: step of the sinc cutoff frequency, radians (0.0628 = pi / 50).
    """

    sigma: float = 0.02
    theta: float = 0.31416
    betag: float = 0.05
    betap: float = 0.1
    omega: float = 0.0628


NO_DRIFT = KernelSteps(sigma=0.0, theta=0.0, betag=0.0, betap=0.0, omega=0.0)


def drift(rng: np.random.Generator, start: float, step: float, low: float, high: float, num_frames: int) -> np.ndarray:
    """Random walk ``p_0 = start``, ``p_{i+1} = clip(p_i + U(-step, step), low, high)`` (RealBasicVSR Sec. 4).

    Args:
        rng: the clip's numpy generator.
        start: initial value (inside [low, high]).
        step: largest absolute step per frame (0 = constant).
        low, high: valid range.
        num_frames: number of values t.

    Returns:
        ``np.ndarray`` float64 ``(t,)``.
    """
    values = np.empty(num_frames, dtype=np.float64)
    value = float(start)
    steps = rng.uniform(-step, step, size=num_frames) if step > 0 else np.zeros(num_frames)
    for i in range(num_frames):
        values[i] = value
        value = float(np.clip(value + steps[i], low, high))
    return values


@dataclass
class KernelParams:
    """Per-frame parameters of one blur stage of a clip.

    Attributes:
        kind: one of :data:`KERNEL_TYPES`.
        size: odd kernel size k (pixels), the same for all frames.
        sigma_x, sigma_y: ``(t,)`` standard deviations along the kernel axes, pixels (Gaussian-like kinds).
        theta: ``(t,)`` rotation, radians (anisotropic kinds).
        beta: ``(t,)`` shape parameter (generalized Gaussian / plateau kinds).
        omega: ``(t,)`` cutoff frequency, radians in (0, pi] (sinc).
    """

    kind: str
    size: int
    sigma_x: np.ndarray
    sigma_y: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    omega: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.sigma_x)

    def kernels(self) -> torch.Tensor:
        """Build the kernels.

        Returns:
            ``torch.Tensor`` float32 ``(t, k, k)``, each summing to 1.
        """
        kernels = [self._kernel(i) for i in range(self.num_frames)]
        return torch.from_numpy(np.stack(kernels).astype(np.float32))

    def _kernel(self, i: int) -> np.ndarray:
        kind, size = self.kind, self.size
        isotropic = kind.endswith("iso") and not kind.endswith("aniso")
        sx, sy, theta, beta = self.sigma_x[i], self.sigma_y[i], self.theta[i], self.beta[i]
        if kind == "sinc":
            return circular_lowpass_kernel(self.omega[i], size, pad_to=0)
        if kind in ("iso", "aniso"):
            return bivariate_Gaussian(size, sx, sy, theta, isotropic=isotropic)
        if kind.startswith("generalized"):
            return bivariate_generalized_Gaussian(size, sx, sy, theta, beta, isotropic=isotropic)
        if kind.startswith("plateau"):
            return bivariate_plateau(size, sx, sy, theta, beta, isotropic=isotropic)
        raise ConfigError(f"unknown kernel type {kind!r}; expected one of {KERNEL_TYPES}")


def _sample_beta(rng: np.random.Generator, beta_range: Sequence[float]) -> float:
    """BasicSR's beta rule: half of the time in [low, 1], otherwise in [1, high]."""
    low, high = beta_range
    if rng.uniform() < 0.5:
        return rng.uniform(low, min(1.0, high))
    return rng.uniform(max(1.0, low), high)


def _sinc_omega_range(size: int) -> tuple[float, float]:
    """Real-ESRGAN: cutoff in [pi/3, pi] for kernels smaller than 13 px, else [pi/5, pi] (fewer ringing artefacts)."""
    return (math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi)


def sample_kernel_params(rng: np.random.Generator, num_frames: int, *, kernel_list: Sequence[str],
                         kernel_prob: Sequence[float], kernel_sizes: Sequence[int], sinc_prob: float,
                         sigma_range: Sequence[float], betag_range: Sequence[float],
                         betap_range: Sequence[float], steps: KernelSteps) -> KernelParams:
    """Draw the blur of one stage for a clip (Real-ESRGAN sampling, RealBasicVSR drift).

    With probability ``sinc_prob`` the kernel is a sinc with cutoff omega in [pi/3, pi] (size < 13) or
    [pi/5, pi]; otherwise its kind is drawn from ``kernel_list`` with ``kernel_prob``. sigma_x, sigma_y ~
    U(sigma_range) (isotropic: sigma_y = sigma_x, theta = 0), theta ~ U(-pi, pi), beta by BasicSR's rule.

    Args:
        rng: the clip's numpy generator.
        num_frames: t.
        kernel_list, kernel_prob: kinds (from :data:`KERNEL_TYPES`, without 'sinc') and their probabilities.
        kernel_sizes: odd sizes to draw from uniformly (Real-ESRGAN: 7, 9, ..., 21).
        sinc_prob: probability of a sinc kernel.
        sigma_range: (low, high) pixels; betag_range / betap_range: shape ranges.
        steps: per-frame drift steps (:data:`NO_DRIFT` for constant parameters).

    Returns:
        :class:`KernelParams` with ``(t,)`` arrays.

    Raises:
        ConfigError: unknown kind, even size, probabilities that do not match the list.
    """
    if len(kernel_list) != len(kernel_prob):
        raise ConfigError(f"kernel_list {list(kernel_list)} and kernel_prob {list(kernel_prob)} differ in length")
    for kind in kernel_list:
        if kind not in KERNEL_TYPES:
            raise ConfigError(f"unknown kernel type {kind!r}; expected one of {KERNEL_TYPES}")
    if any(size % 2 == 0 for size in kernel_sizes):
        raise ConfigError(f"kernel sizes must be odd, got {list(kernel_sizes)}")
    size = int(rng.choice(np.asarray(kernel_sizes)))
    prob = np.asarray(kernel_prob, dtype=np.float64)
    if rng.uniform() < sinc_prob:
        kind = "sinc"
    else:
        kind = str(kernel_list[int(rng.choice(len(kernel_list), p=prob / prob.sum()))])
    t = num_frames
    omega_low, omega_high = _sinc_omega_range(size)
    omega = drift(rng, rng.uniform(omega_low, omega_high), steps.omega, omega_low, omega_high, t)
    sig_low, sig_high = sigma_range
    sigma_x = drift(rng, rng.uniform(sig_low, sig_high), steps.sigma, sig_low, sig_high, t)
    isotropic = kind.endswith("iso") and not kind.endswith("aniso")
    if isotropic or kind == "sinc":
        sigma_y, theta = sigma_x.copy(), np.zeros(t)
    else:
        sigma_y = drift(rng, rng.uniform(sig_low, sig_high), steps.sigma, sig_low, sig_high, t)
        theta = drift(rng, rng.uniform(-math.pi, math.pi), steps.theta, -math.pi, math.pi, t)
    if kind.startswith("generalized"):
        beta = drift(rng, _sample_beta(rng, betag_range), steps.betag, betag_range[0], betag_range[1], t)
    elif kind.startswith("plateau"):
        beta = drift(rng, _sample_beta(rng, betap_range), steps.betap, betap_range[0], betap_range[1], t)
    else:
        beta = np.ones(t)
    return KernelParams(kind=kind, size=size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta, omega=omega)


def sample_sinc_params(rng: np.random.Generator, num_frames: int, *, kernel_sizes: Sequence[int],
                       omega_range: Sequence[float], omega_step: float) -> KernelParams:
    """Draw the final sinc filter of a clip (Real-ESRGAN: size from ``kernel_sizes``, omega ~ U(pi/3, pi)).

    Args:
        rng: the clip's numpy generator.
        num_frames: t.
        kernel_sizes: odd sizes to draw from.
        omega_range: (low, high) cutoff, radians.
        omega_step: per-frame drift step of omega, radians.

    Returns:
        :class:`KernelParams` of kind 'sinc'.
    """
    size = int(rng.choice(np.asarray(kernel_sizes)))
    low, high = omega_range
    omega = drift(rng, rng.uniform(low, high), omega_step, low, high, num_frames)
    zeros = np.zeros(num_frames)
    return KernelParams(kind="sinc", size=size, sigma_x=zeros, sigma_y=zeros.copy(), theta=zeros.copy(),
                        beta=np.ones(num_frames), omega=omega)
