"""The denoising loop every latent-diffusion family of the zoo samples with, over diffusers schedulers' own ``step``.

Pieces (each usable alone):

- :func:`denoise`: ``for t in scheduler.timesteps: out = model(scale_model_input(x, t), t); x = scheduler.step(out,
  t, x)``, with hooks: ``on_step`` before each step (e.g. to set attention-processor state, or alternate between
  spatial and temporal propagation) and ``on_x0`` on the predicted clean latents (e.g. Upscale-A-Video's flow-guided
  latent propagation). Works with DDIM, DDPM and Euler (EDM, Karras sigmas) schedulers; ``on_x0`` needs one whose
  parameterisation :func:`noise_coefficients` knows (those three).
- :func:`classifier_free_guidance`: one model call on the conditional and unconditional inputs batched together
  (unconditional first), then ``u + g (c - u)`` (Ho & Salimans 2022); the conditioning is any dict of tensors (text
  tokens, image embeddings, ``added_time_ids``), plus inputs shared by both branches.
- :func:`predict_over_tiles`: one model evaluation of a whole clip's latents as overlapping temporal windows x
  spatial tiles blended by :class:`~zoo.diffusion.tiles.TileAccumulator` (MultiDiffusion, Bar-Tal et al. 2023), with
  clip-level tensors kept on the CPU and one tile at a time on the accelerator.
- :func:`chunk_generator`: the random generator of a streamed chunk, from the seed and the chunk's first frame.

**x0 hooks and schedulers.** A scheduler's ``step`` derives the clean estimate x0 and the noise estimate eps from
the model output and the current sample. After ``on_x0`` replaces x0 by x0', the loop keeps eps and hands the
scheduler the sample and model output that give exactly (x0', eps): in the variance-preserving form
``x_in = a x0 + s eps`` of the model input (DDIM/DDPM: ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``; Euler:
``x_in = x / sqrt(sigma^2 + 1)``, ``a = 1 / sqrt(sigma^2 + 1)``, ``s = sigma a``) the sample becomes
``(a x0' + s eps) / c_in`` and the output the prediction of that type (eps; ``v = a eps - s x0'``; or x0'). For DDIM
with eta 0 this is Upscale-A-Video's ``x_prev = sqrt(alpha_bar_prev) x0' + sqrt(1 - alpha_bar_prev) eps`` (official
``step_v0`` / ``step_vt``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from zoo.diffusion.tiles import WEIGHT_KINDS, TileAccumulator, plan_windows, tile_weights
from zoo.errors import ConfigError

__all__ = ["SamplerUpscaler", "Step", "chunk_generator", "classifier_free_guidance", "denoise", "noise_coefficients",
           "predict_over_tiles", "split_prediction", "step_inputs"]

#: Multiplier of the first frame index in :func:`chunk_generator` (a prime, so chunks of one seed do not collide).
_CHUNK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Step:
    """Where the loop is: ``index`` (0-based, in the order of denoising), the scheduler ``timestep`` and the number of
    steps run (``num_steps``, after ``first_step``)."""

    index: int
    timestep: torch.Tensor
    num_steps: int


def chunk_generator(seed: int, first_frame: int = 0) -> torch.Generator:
    """CPU generator of the chunk that starts at video frame ``first_frame``: ``manual_seed(seed + 1000003 i)``.

    The whole clip (or the first chunk) draws exactly what ``seed`` alone gives; every later chunk of a streamed video
    gets its own noise, and the same chunk always the same.

    Raises:
        ConfigError: negative or non-integer values.
    """
    for name, value in (("seed", seed), ("first_frame", first_frame)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
    if first_frame < 0:
        raise ConfigError(f"first_frame must be >= 0; got {first_frame}")
    return torch.Generator().manual_seed((seed + _CHUNK_SEED_STRIDE * first_frame) % (2**63))


def _is_variance_exploding(scheduler: Any) -> bool:
    """Euler-style schedulers keep samples as ``x0 + sigma eps`` and scale the model input by ``1/sqrt(sigma^2+1)``."""
    return getattr(scheduler, "sigmas", None) is not None and hasattr(scheduler, "step_index")


def noise_coefficients(scheduler: Any, timestep: torch.Tensor | int) -> tuple[float, float, float]:
    """``(c_in, a, s)`` at ``timestep``: the model input is ``c_in * sample = a x0 + s eps`` with ``a^2 + s^2 = 1``.

    DDIM / DDPM (``alphas_cumprod``): ``c_in = 1``, ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``.
    Euler (``sigmas``; call after ``scale_model_input``, which fixes the step index):
    ``c_in = a = 1 / sqrt(sigma^2 + 1)``, ``s = sigma a``.

    Raises:
        ConfigError: a scheduler of neither kind.
    """
    if _is_variance_exploding(scheduler):
        index = scheduler.step_index if scheduler.step_index is not None else scheduler.index_for_timestep(timestep)
        sigma = float(scheduler.sigmas[index])
        c_in = (sigma**2 + 1.0) ** -0.5
        return c_in, c_in, sigma * c_in
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise ConfigError(f"{type(scheduler).__name__}: x0 hooks need a DDIM/DDPM (alphas_cumprod) or Euler (sigmas) "
                          "scheduler")
    alpha = float(alphas[int(timestep)])
    return 1.0, alpha**0.5, (1.0 - alpha) ** 0.5


def split_prediction(scheduler: Any, model_output: torch.Tensor, sample: torch.Tensor,
                     timestep: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, eps)`` from a model output of the scheduler's ``prediction_type`` (``epsilon``, ``v_prediction``,
    ``sample``) at ``sample`` (the scheduler's sample, before ``scale_model_input``), computed in float64.

    Raises:
        ConfigError: another prediction type or scheduler kind.
    """
    c_in, a, s = noise_coefficients(scheduler, timestep)
    x_in = sample.double() * c_in
    model_output = model_output.double()
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        eps = model_output
        x0 = (x_in - s * eps) / a
    elif kind == "v_prediction":
        x0 = a * x_in - s * model_output
        eps = s * x_in + a * model_output
    elif kind == "sample":
        x0 = model_output
        eps = (x_in - a * x0) / s
    else:
        raise ConfigError(f"prediction_type {kind!r} is not supported by the zoo's sampler")
    return x0, eps


def step_inputs(scheduler: Any, x0: torch.Tensor, eps: torch.Tensor,
                timestep: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sample, model_output)`` from which ``scheduler.step`` derives exactly ``(x0, eps)`` (inverse of
    :func:`split_prediction`), in the dtype of ``x0`` and ``eps``."""
    c_in, a, s = noise_coefficients(scheduler, timestep)
    sample = (a * x0 + s * eps) / c_in
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return sample, eps
    if kind == "v_prediction":
        return sample, a * eps - s * x0
    if kind == "sample":
        return sample, x0
    raise ConfigError(f"prediction_type {kind!r} is not supported by the zoo's sampler")


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def denoise(
    scheduler: Any,
    latents: torch.Tensor,
    model: Callable[[torch.Tensor, torch.Tensor, Step], torch.Tensor],
    *,
    num_inference_steps: int,
    first_step: int = 0,
    on_step: Callable[[Step], None] | None = None,
    on_x0: Callable[[torch.Tensor, Step], torch.Tensor | None] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "denoising",
) -> torch.Tensor:
    """Run the reverse process with the scheduler's own ``step``.

    Args:
        scheduler: a diffusers scheduler (its state is reset by ``set_timesteps``).
        latents: the starting sample (any shape), already at the scheduler's noise scale (e.g. ``randn *
            scheduler.init_noise_sigma``, or ``scheduler.add_noise(z, noise, t_first)`` when starting late).
        model: ``model(model_input, timestep, step) -> output`` of the scheduler's ``prediction_type``, where
            ``model_input = scheduler.scale_model_input(latents, timestep)`` (guidance and tiling happen inside).
        num_inference_steps: steps of the schedule (``set_timesteps``).
        first_step: skip the first steps of the schedule (start at a lower noise level; img2img "strength").
        on_step: called with the :class:`Step` before its model call.
        on_x0: ``on_x0(x0, step) -> new x0 or None`` after the model call; a returned tensor replaces the clean
            estimate (module docstring: the noise estimate is kept).
        generator: passed to ``step`` for stochastic schedulers (DDPM, Euler with churn).
        progress: tqdm bar over the steps.
        desc: its label.

    Returns:
        The final sample, same shape as ``latents`` (dtype and device of what ``step`` returns).

    Raises:
        ConfigError: bad step counts; ``on_x0`` with an unsupported scheduler kind or prediction type.
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
    if not 0 <= first_step < num_inference_steps:
        raise ConfigError(f"first_step must be in [0, {num_inference_steps}); got {first_step}")
    scheduler.set_timesteps(num_inference_steps)
    timesteps = scheduler.timesteps[first_step:]
    if first_step and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first_step)
    stochastic = {"generator": generator} if generator is not None and _accepts(scheduler.step, "generator") else {}
    for index, timestep in enumerate(tqdm(timesteps, desc=desc, disable=not progress, leave=False)):
        step = Step(index=index, timestep=timestep, num_steps=len(timesteps))
        if on_step is not None:
            on_step(step)
        model_input = scheduler.scale_model_input(latents, timestep)
        output = model(model_input, timestep, step)
        sample = latents
        if on_x0 is not None:
            x0, eps = split_prediction(scheduler, output, latents, timestep)
            new_x0 = on_x0(x0.to(latents.dtype), step)
            if new_x0 is not None:
                # in float64, so that the scheduler's own split of (sample, output) gives back (x0', eps) to
                # float32 rounding
                sample, output = step_inputs(scheduler, new_x0.double(), eps, timestep)
                sample, output = sample.to(latents.dtype), output.to(latents.dtype)
        latents = scheduler.step(output, timestep, sample, return_dict=False, **stochastic)[0]
    return latents


def classifier_free_guidance(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timestep: torch.Tensor | int,
    *,
    cond: Mapping[str, torch.Tensor],
    uncond: Mapping[str, torch.Tensor] | None,
    guidance_scale: float,
    shared: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """``model`` with classifier-free guidance, both branches in one batch.

    Args:
        model: ``model(x, timestep, **shared, **conditioning) -> output`` (batch-first tensors).
        x: (b, ...) model input.
        timestep: diffusion step.
        cond: the conditional branch's conditioning (text tokens, image embeddings, ``added_time_ids``, ...).
        uncond: the unconditional branch's, same keys and shapes; None runs the conditional branch only.
        guidance_scale: ``g`` in ``u + g (c - u)``.
        shared: inputs both branches get (tensors are repeated for the doubled batch; other values passed as is).

    Returns:
        The guided output in float32 (the conditional output when ``uncond`` is None). The batch given to
        ``model`` holds the unconditional rows first (``[0, b)``), the conditional ones after (``[b, 2b)``):
        attention processors that treat the branches differently rely on this order.

    Raises:
        ConfigError: ``cond`` and ``uncond`` with different keys.
    """
    shared = dict(shared or {})
    if uncond is None:
        return model(x, timestep, **shared, **cond).float()
    if set(cond) != set(uncond):
        raise ConfigError(f"guidance: conditional keys {sorted(cond)} differ from unconditional {sorted(uncond)}")
    doubled = {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in shared.items()}
    batched = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
    out_uncond, out_cond = model(torch.cat([x, x]), timestep, **doubled, **batched).float().chunk(2)
    return out_uncond + guidance_scale * (out_cond - out_uncond)


def predict_over_tiles(
    fn: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    *,
    context: Mapping[str, torch.Tensor] | None = None,
    window: int | None = None,
    window_overlap: int = 0,
    tile: int | None = None,
    tile_overlap: int = 0,
    window_weights: str = "feather",
    tile_weights_kind: str = "feather",
    floor: float = 1e-3,
    gaussian_sigma: float = 0.1,
    device: torch.device | str = "cpu",
    reverse_time: bool = False,
    on_tile: Callable[[tuple[int, ...], tuple[tuple[int, int], ...]], None] | None = None,
    exact: bool = False,
) -> torch.Tensor:
    """One model evaluation of a whole clip as overlapping temporal windows x spatial tiles, blended.

    Args:
        fn: ``fn(piece, **context_pieces) -> output`` for one window x tile: ``piece`` (b, n, c, th, tw) on
            ``device``; returns (b, n, c', th, tw) (any device and float dtype).
        latents: (b, t, c, h, w) CPU clip latents.
        context: clip-level tensors laid out (b, t, k, h, w) at the latents' resolution (e.g. the LQ frames), cut to
            the same window and tile.
        window, window_overlap: temporal windows (:func:`~zoo.diffusion.tiles.plan_windows`; None: whole clip).
        tile, tile_overlap: square spatial tiles in latent pixels (None: whole frames).
        window_weights, tile_weights_kind: blending weights along time and along height/width
            (:data:`~zoo.diffusion.tiles.WEIGHT_KINDS`).
        floor: lowest weight of a piece at any position (keeps every latent position covered).
        gaussian_sigma: of Gaussian weights, as a fraction of the window or tile size.
        device: where ``fn`` runs.
        reverse_time: visit windows from the last to the first (for propagation between temporal neighbours).
        on_tile: called with ``(index, spans)`` (index and ``(start, end)`` per axis t, h, w) before each piece.
        exact: windows and tiles of exactly ``window`` / ``tile`` items where the clip is longer
            (:func:`~zoo.diffusion.tiles.plan_windows`).

    Returns:
        (b, t, c', h, w) CPU float32: the blended prediction (the single piece's output as is when one window and
        one tile cover the clip).

    Raises:
        ConfigError: bad windows, tiles or weight kinds.
    """
    from zoo.diffusion.tiles import check_window

    check_window(window, window_overlap, name="window")
    check_window(tile, tile_overlap, name="tile")
    for kind in (window_weights, tile_weights_kind):
        if kind not in WEIGHT_KINDS:
            raise ConfigError(f"blend weights must be one of {WEIGHT_KINDS}, got {kind!r}")
    context = dict(context or {})
    b, t, _, h, w = latents.shape
    plans = (plan_windows(t, window, window_overlap, exact=exact), plan_windows(h, tile, tile_overlap, exact=exact),
             plan_windows(w, tile, tile_overlap, exact=exact))
    time_order = range(len(plans[0]) - 1, -1, -1) if reverse_time else range(len(plans[0]))
    order = [(i, j, k) for i in time_order for j in range(len(plans[1])) for k in range(len(plans[2]))]
    blend: TileAccumulator | None = None
    for index in order:
        spans = tuple(plan[i] for plan, i in zip(plans, index))
        (t0, t1), (y0, y1), (x0, x1) = spans
        if on_tile is not None:
            on_tile(index, spans)
        piece = latents[:, t0:t1, :, y0:y1, x0:x1].to(device)
        extra = {k: v[:, t0:t1, :, y0:y1, x0:x1].to(device) for k, v in context.items()}
        out = fn(piece, **extra).detach().to("cpu", torch.float32)
        if len(order) == 1:
            return out
        if blend is None:
            blend = TileAccumulator((b, t, out.shape[2], h, w), axes=(1, 3, 4))
        (t_w,) = tile_weights(plans[:1], index[:1], kind=window_weights, gaussian_sigma=gaussian_sigma)
        y_w, x_w = tile_weights(plans[1:], index[1:], kind=tile_weights_kind, gaussian_sigma=gaussian_sigma)
        blend.add(spans, out, (t_w, y_w, x_w), floor=floor)
    return blend.result()


class SamplerUpscaler(nn.Module):
    """A diffusion pipeline with fixed sampling options as an upscaler module: ``forward(lq (b, t, 3, h, w) [0, 1])
    -> sr (b, t, 3, s h, s w) [0, 1]``, for :func:`zoo.inference.upscale_video` and ``zoo.load_pretrained``.

    Holds the pipeline (moved with ``.to(device)``) and its options (a dataclass whose fields are keywords of the
    pipeline's ``forward``); ``scale`` is the pipeline's. ``takes_first_frame``: :mod:`zoo.inference` passes each
    streamed chunk's first frame index, so every chunk of a video draws its own noise (:func:`chunk_generator`).
    """

    takes_first_frame = True

    def __init__(self, pipeline: nn.Module, options: Any) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.options = options
        self.scale = pipeline.scale

    def compile_targets(self) -> tuple[str, ...]:
        """What :func:`zoo.inference.compile_network` compiles: the denoising UNet, called once per step, window and
        tile at the same shapes (the sampling loop stays eager; the VAE is called through ``decode``/``encode``,
        not ``forward``, so compiling it would change nothing)."""
        return ("pipeline.unet",)

    def forward(self, lq: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        from dataclasses import asdict

        return self.pipeline(lq, first_frame=first_frame, **asdict(self.options))
