"""Training inputs and targets of latent diffusion: epsilon, v (velocity) and EDM (Karras et al. 2022) forms.

:func:`training_pair` noises clean latents at given timesteps with a diffusers scheduler's ``add_noise`` and
returns the target of its ``prediction_type`` (``epsilon``: the noise; ``v_prediction``: ``scheduler.get_velocity``,
Salimans & Ho 2022). :func:`edm_training_pair` is the continuous-sigma form Stable Video Diffusion is trained in:
``x = x0 + sigma n``, the network sees ``c_in x`` and ``c_noise = 0.25 ln sigma`` and predicts ``F`` with
``D(x) = c_skip x + c_out F`` (``sigma_data = 1``: ``c_skip = 1 / (sigma^2 + 1)``, ``c_out = -sigma / sqrt(sigma^2 +
1)`` for v-prediction, as diffusers' ``EulerDiscreteScheduler``), and the loss ``lambda(sigma) |D - x0|^2`` with
``lambda = (sigma^2 + 1) / sigma^2`` is exactly the plain MSE between ``F`` and ``F* = (x0 - c_skip x) / c_out``.
"""
from __future__ import annotations

from typing import Any

import torch

from zoo.errors import ConfigError

__all__ = ["edm_training_pair", "sample_edm_sigmas", "training_pair"]


def training_pair(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noisy, target)`` for discrete-time training with ``scheduler`` (DDPM / DDIM family).

    Args:
        scheduler: a diffusers scheduler with ``add_noise`` (and ``get_velocity`` for v-prediction).
        latents: (b, ...) clean latents x0.
        noise: like ``latents``, standard normal.
        timesteps: (b,) long in ``[0, num_train_timesteps)``.

    Returns:
        ``noisy = sqrt(a_t) x0 + sqrt(1 - a_t) noise`` and the target of the scheduler's ``prediction_type``.

    Raises:
        ConfigError: another prediction type.
    """
    noisy = scheduler.add_noise(latents, noise, timesteps)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noisy, noise
    if kind == "v_prediction":
        return noisy, scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return noisy, latents
    raise ConfigError(f"prediction_type {kind!r} is not supported for training")


def sample_edm_sigmas(batch: int, *, p_mean: float, p_std: float, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Training noise levels ``ln sigma ~ N(p_mean, p_std^2)`` (EDM, Karras et al. 2022, Table 1): (batch,) float32."""
    return torch.exp(p_mean + p_std * torch.randn(batch, generator=generator)).to(device)


def edm_training_pair(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, *,
                      prediction_type: str = "v_prediction") -> dict[str, torch.Tensor]:
    """EDM inputs and target for one batch.

    Args:
        latents: (b, ...) clean latents x0.
        noise: like ``latents``, standard normal.
        sigmas: (b,) noise levels.
        prediction_type: ``'v_prediction'`` (SVD) or ``'epsilon'`` (``c_skip = 1``, ``c_out = -sigma``: diffusers'
            ``x0 = x - sigma eps``).

    Returns:
        ``{'model_input': c_in x, 'timestep': c_noise (b,), 'target': F*, 'noisy': x, 'c_skip', 'c_out'}``, the
        coefficients shaped to broadcast against ``latents``.

    Raises:
        ConfigError: another prediction type.
    """
    view = (-1,) + (1,) * (latents.ndim - 1)
    sigma = sigmas.to(latents).reshape(view)
    noisy = latents + sigma * noise
    c_in = (sigma**2 + 1) ** -0.5
    if prediction_type == "v_prediction":
        c_skip, c_out = 1.0 / (sigma**2 + 1), -sigma * c_in
    elif prediction_type == "epsilon":
        c_skip, c_out = torch.ones_like(sigma), -sigma
    else:
        raise ConfigError(f"EDM prediction_type {prediction_type!r} is not supported")
    target = (latents - c_skip * noisy) / c_out
    return {"model_input": c_in * noisy, "timestep": 0.25 * torch.log(sigmas.to(latents)), "target": target,
            "noisy": noisy, "c_skip": c_skip, "c_out": c_out}
