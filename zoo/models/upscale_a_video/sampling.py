"""Upscale-A-Video sampling: windowed, tiled DDIM with classifier-free guidance, latent propagation, colour fix.

Zhou et al., "Upscale-A-Video", CVPR 2024, Sec. 3.2-3.3 and the official inference code (sczhou/Upscale-A-Video
``inference_upscale_a_video.py``, ``models_video/pipeline_upscale_a_video.py``, ``models_video/scheduling_ddim.py``).
Built on the shared latent-diffusion layer (:mod:`zoo.diffusion`). One call of :class:`UpscaleAVideoPipeline`
upscales a clip ``lq`` (b, t, 3, h, w) in [0, 1] by the VAE's factor (4):

1. **Conditioning.** ``lq`` is mapped to [-1, 1] and noise-augmented by the LQ scheduler at ``noise_level``
   (``low_res_scheduler.add_noise``; default 120 of at most 350); the UNet also gets ``noise_level`` as its class
   label. Text: the CLIP text encoder's last hidden states of ``prompt`` and ``negative_prompt`` (official defaults
   "best quality, extremely detailed" / "blur, worst quality"; the official script prepends a LLaVA caption, not
   done here).
2. **Denoising** (:func:`zoo.diffusion.sampler.denoise`, the DDIM scheduler's own ``step``, 30 steps, eta 0) from
   Gaussian latents at the LQ resolution. At every step, for every temporal window (8 frames, 2 shared) and spatial
   tile, the UNet predicts v for the conditional and unconditional text in one batch; guidance ``v_u + g (v_c -
   v_u)`` (``g`` = 6, used when > 1). Windows and tiles are blended by
   :func:`zoo.diffusion.sampler.predict_over_tiles` with the shared feathered weights. At the ``propagation_steps``
   the predicted x0 is fused along RAFT flows (:func:`zoo.layers.latent_propagation.propagate_latents`, the loop's
   ``on_x0`` hook) and the step continues from it with the same noise estimate:
   ``x_prev = sqrt(a_prev) x0' + sqrt(1 - a_prev) eps`` (official ``step_v0`` / ``step_vt``).
3. **Decoding** (:func:`zoo.diffusion.vae.iter_decoded_chunks`). The VAE decodes ``vae_chunk`` (3) frames at a time
   (its GroupNorm pools over those frames, as in the official code), tile by tile with feathered blending when the
   frame is tiled; the LQ-conditioned temporal decoder gets the clean LQ frames. Output clamped to [-1, 1],
   colour-corrected against the bicubic-upsampled LQ (wavelet or AdaIN, :mod:`zoo.layers.color`), mapped to [0, 1].

Memory. The clip-level state (latents, LQ, predictions, output) lives on the CPU; only one tile x window (x2 for
guidance) is on the accelerator at a time, so accelerator memory does not grow with the clip's length or size.
For long videos call the sampler through :func:`zoo.inference.upscale_video` (via
:meth:`UpscaleAVideoPipeline.as_upscaler`), which feeds it chunks.

Differences from the official code, by design:

- Spatial tiles are blended in latent space at every step (MultiDiffusion-style, as the paper's "overlapping
  patches") and in pixel space when decoding; the official script runs the whole pipeline per tile
  (256 LQ px + 64 px context on each side, only when ``h w >= 384^2``) and pastes the tile centres without
  blending. Here tiles are ``tile`` px and start every ``tile - tile_overlap`` px.
- Overlapping windows are cross-faded with the shared feathered weights (``window_blend='feather'``); the official
  code averages each new window with the running value 0.5 / 0.5 and can compute the last window twice.
  ``window_blend='uniform'`` gives the plain mean over the covering windows.
- Random numbers come from one CPU generator per streamed chunk, seeded from ``seed`` and the chunk's first frame
  (:func:`zoo.diffusion.sampler.chunk_generator`; a whole clip draws what ``seed`` alone gives): LQ augmentation noise
  first, then the initial latents, as the official order, drawn for the whole chunk, so tiling and windowing do not
  change them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from einops import rearrange
from torch import nn

from zoo.diffusion.sampler import SamplerUpscaler, Step, chunk_generator, classifier_free_guidance, denoise, predict_over_tiles
from zoo.diffusion.text import TextConditioning, cross_attention_dim
from zoo.diffusion.tiles import WEIGHT_KINDS, check_window
from zoo.diffusion.vae import iter_decoded_chunks
from zoo.errors import ConfigError, InputError
from zoo.layers.checks import sampler_input
from zoo.layers.color import COLOR_FIXES, apply_color_fix
from zoo.layers.latent_propagation import estimate_bidirectional_flows, propagate_latents
from zoo.models.upscale_a_video.net import UpscaleAVideoComponents

__all__ = ["DEFAULT_LOW_RES_SCHEDULER", "DEFAULT_SCHEDULER", "RAFT_MIN_SIZE", "SamplingOptions", "UpscaleAVideoPipeline",
           "UpscaleAVideoUpscaler"]

#: DDIM of the SD x4 upscaler (Stability-AI/stablediffusion ``configs/stable-diffusion/x4-upscaling.yaml``:
#: v-parameterisation, ``linear_start`` 1e-4, ``linear_end`` 0.02 on the square-root scale = diffusers
#: ``scaled_linear``; diffusers' folder adds ``steps_offset`` 1, ``set_alpha_to_one`` False, no clipping). Used when
#: the components carry no scheduler (random initialisation).
DEFAULT_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
                         prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
#: Noise augmentation of the LQ input (same yaml, ``low_scale_config.noise_schedule_config``).
DEFAULT_LOW_RES_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                 beta_schedule="scaled_linear")

#: Smallest frame side (LQ px) torchvision's ``raft_large`` accepts: its correlation pyramid needs feature maps of at
#: least 16 px at 1/8 resolution. Latent propagation runs RAFT on whole LQ frames.
RAFT_MIN_SIZE = 128

_DEFAULT_PROMPT = "best quality, extremely detailed"
_DEFAULT_NEGATIVE_PROMPT = "blur, worst quality"


@dataclass(frozen=True)
class SamplingOptions:
    """Keyword options of :meth:`UpscaleAVideoPipeline.forward` as one typed value (for systems and YAML).

    Defaults are the official inference defaults (``inference_upscale_a_video.py``), except ``color_fix``
    (official default none; the paper recommends the wavelet fix) and ``progress``.
    """

    prompt: str = _DEFAULT_PROMPT
    negative_prompt: str = _DEFAULT_NEGATIVE_PROMPT
    noise_level: int = 120
    guidance_scale: float = 6.0
    num_inference_steps: int = 30
    propagation_steps: tuple[int, ...] = field(default_factory=tuple)
    color_fix: str = "wavelet"
    seed: int = 0
    window: int | None = 8
    window_overlap: int = 2
    window_blend: str = "feather"
    tile: int | None = 256
    tile_overlap: int = 64
    vae_chunk: int = 3
    progress: bool = False


# plain data: checkpoints that record it in their hyper-parameters load with torch.load(weights_only=True)
torch.serialization.add_safe_globals([SamplingOptions])


class UpscaleAVideoPipeline(TextConditioning, nn.Module):
    """The Upscale-A-Video sampler around :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoComponents`.

    Registers the components' networks under the same names (``unet``, ``vae``, ``text_encoder``, ``flow_net``), so
    its state dict is the components'. Runs where its parameters are (``pipeline.to('cuda')``); fp16/bf16 UNets
    work (predictions are accumulated in float32 on the CPU).

    Args:
        components: from :func:`zoo.models.upscale_a_video.load.load_upscale_a_video`. Missing schedulers fall back
            to the SD x4 upscaler's (:data:`DEFAULT_SCHEDULER`, :data:`DEFAULT_LOW_RES_SCHEDULER`); a missing text
            encoder gives zero text embeddings (with a warning); a missing flow net disables ``propagation_steps``.

    Raises:
        ConfigError: UNet and VAE disagree on the latent channels, or the scheduler uses thresholding / an
            unsupported prediction type.
    """

    family_label = "Upscale-A-Video"

    def __init__(self, components: UpscaleAVideoComponents) -> None:
        super().__init__()
        self.unet = components.unet
        self.vae = components.vae
        self.text_encoder = components.text_encoder
        self.flow_net = components.flow_net
        self.tokenizer = components.tokenizer
        config = components.scheduler.config if components.scheduler is not None else DEFAULT_SCHEDULER
        self.scheduler = DDIMScheduler.from_config(config)
        low_res = components.low_res_scheduler
        self.low_res_scheduler = DDPMScheduler.from_config(
            low_res.config if low_res is not None else DEFAULT_LOW_RES_SCHEDULER)
        if self.scheduler.config.prediction_type not in ("v_prediction", "epsilon"):
            raise ConfigError(f"scheduler prediction_type {self.scheduler.config.prediction_type!r} is not supported "
                              "(Upscale-A-Video uses 'v_prediction')")
        if self.scheduler.config.thresholding:
            raise ConfigError("scheduler thresholding is not supported by the Upscale-A-Video sampler")
        self.latent_channels = self.vae.post_quant_conv.in_channels
        if self.unet.conv_in.in_channels != self.latent_channels + 3:
            raise ConfigError(f"UNet input channels {self.unet.conv_in.in_channels} != VAE latent channels "
                              f"{self.latent_channels} + 3 LQ channels")
        self.cross_attention_dim = cross_attention_dim(self.unet)

    # ------------------------------------------------------------------ properties
    @property
    def scale(self) -> int:
        """Upscaling factor: the VAE's (4); latents have the LQ resolution."""
        return int(self.vae.downscale)

    # ------------------------------------------------------------------ denoising
    def _unet(self, x: torch.Tensor, timestep: torch.Tensor, *, lq: torch.Tensor, noise_level: torch.Tensor,
              text: torch.Tensor) -> torch.Tensor:
        return self.unet(x, timestep, lq, noise_level, text)

    def guided_prediction(self, latents: torch.Tensor, timestep: torch.Tensor | int, lq: torch.Tensor,
                          noise_level: torch.Tensor, text: torch.Tensor, uncond_text: torch.Tensor | None,
                          guidance_scale: float) -> torch.Tensor:
        """UNet output for one tile x window, with classifier-free guidance when ``uncond_text`` is given.

        Args:
            latents: (b, n, 4, h, w) model input (after ``scale_model_input``) on :attr:`device`.
            timestep: diffusion step.
            lq: (b, n, 3, h, w) noise-augmented LQ in [-1, 1] (same h, w).
            noise_level: (b,) long, the augmentation level (class label).
            text, uncond_text: (b, k, d) conditional / unconditional tokens; ``uncond_text=None`` skips guidance.
            guidance_scale: ``g`` in ``v_u + g (v_c - v_u)`` (Ho & Salimans 2022), through
                :func:`zoo.diffusion.sampler.classifier_free_guidance`.

        Returns:
            (b, n, 4, h, w) float32 on :attr:`device`. With ``guidance_scale`` 1 this equals the conditional
            prediction (up to rounding).
        """
        return classifier_free_guidance(
            self._unet, latents, timestep, cond={"text": text},
            uncond=None if uncond_text is None else {"text": uncond_text}, guidance_scale=guidance_scale,
            shared={"lq": lq, "noise_level": noise_level})

    # ------------------------------------------------------------------ decoding
    def _decode(self, z: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """One chunk x tile through the VAE (its own dtype, outside autocast), clamped to [-1, 1]."""
        dtype = self.vae.post_quant_conv.weight.dtype
        autocast = (torch.autocast(self.device.type, enabled=False) if self.device.type in ("cuda", "cpu")
                    else contextlib.nullcontext())
        with autocast:
            out = self.vae.decode(z.to(self.device, dtype), lq.to(self.device, dtype))
        return out.float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, lq: torch.Tensor, *, color_fix: str = "wavelet",
                       tile: int | None = 256, tile_overlap: int = 64, vae_chunk: int = 3,
                       progress: bool = False) -> torch.Tensor:
        """Decode sampled latents to frames, ``vae_chunk`` frames at a time, tiled, colour-corrected.

        Through :func:`zoo.diffusion.vae.iter_decoded_chunks` (tiles feather-blended in pixel space).

        Args:
            latents: (b, t, 4, h, w) diffusion-space latents (any device; kept on the CPU).
            lq: (b, t, 3, h, w) clean LQ frames in [0, 1] (decoder condition and colour reference).
            color_fix: ``'wavelet'``, ``'adain'`` or ``'none'``.
            tile, tile_overlap: spatial tiles in latent (= LQ) pixels; None decodes whole frames.
            vae_chunk: frames per VAE call (official 3; the decoder's GroupNorm pools over them).
            progress: tqdm bar over chunks.

        Returns:
            (b, t, 3, s h, s w) CPU float32 in [0, 1].
        """
        check_window(tile, tile_overlap, name="tile")
        if color_fix not in COLOR_FIXES:
            raise ConfigError(f"color_fix must be one of {COLOR_FIXES}; got {color_fix!r}")
        latents = latents.detach().to("cpu", torch.float32)
        lq = sampler_input(lq).mul(2.0).sub(1.0)
        b, t, _, h, w = latents.shape
        s = self.scale
        sr = torch.empty(b, t, 3, h * s, w * s)
        chunks = iter_decoded_chunks(self._decode, latents, scale=s, chunk=vae_chunk, tile=tile,
                                     tile_overlap=tile_overlap, context={"lq": lq}, device=self.device,
                                     progress=progress)
        for start, end, frames in chunks:
            if color_fix != "none":
                # official reference: torch's plain bicubic x4 of the LQ (inference_upscale_a_video.py), kept as is
                reference = F.interpolate(rearrange(lq[:, start:end], "b t c h w -> (b t) c h w"), scale_factor=s,
                                          mode="bicubic", align_corners=False)
                reference = rearrange(reference, "(b t) c h w -> b t c h w", b=b)
                frames = apply_color_fix(frames, reference, color_fix)
            sr[:, start:end] = frames.add(1.0).div(2.0).clamp(0.0, 1.0)
        return sr

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_latents(
        self,
        lq: torch.Tensor,
        *,
        prompt: str | Sequence[str] = _DEFAULT_PROMPT,
        negative_prompt: str | Sequence[str] = _DEFAULT_NEGATIVE_PROMPT,
        noise_level: int = 120,
        guidance_scale: float = 6.0,
        num_inference_steps: int = 30,
        propagation_steps: Iterable[int] = (),
        seed: int = 0,
        window: int | None = 8,
        window_overlap: int = 2,
        window_blend: str = "feather",
        tile: int | None = 256,
        tile_overlap: int = 64,
        progress: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run the denoising loop; returns the final latents (b, t, 4, h, w) CPU float32.

        Arguments as :meth:`forward`; ``generator`` (a CPU ``torch.Generator``) replaces ``seed`` when given.
        """
        lq = sampler_input(lq)
        b, t, _, h, w = lq.shape
        steps = _check_steps(num_inference_steps, propagation_steps)
        max_level = getattr(self.unet, "max_noise_level", 350)
        if isinstance(noise_level, bool) or int(noise_level) != noise_level or not 0 <= noise_level <= max_level:
            raise ConfigError(f"noise_level must be an integer in [0, {max_level}]; got {noise_level!r}")
        noise_level = int(noise_level)
        check_window(window, window_overlap, name="window")
        check_window(tile, tile_overlap, name="tile")
        if window_blend not in WEIGHT_KINDS:
            raise ConfigError(f"window_blend must be one of {WEIGHT_KINDS}; got {window_blend!r}")
        if steps and self.flow_net is None:
            raise ConfigError("propagation_steps need a flow network (RAFT): load the released folder with its "
                              "propagator/raft-things.pth, or pass raft_path to load_upscale_a_video")

        generator = generator if generator is not None else chunk_generator(int(seed))
        lq_m11 = lq * 2.0 - 1.0
        levels = torch.full((b,), noise_level, dtype=torch.long)
        augmentation = torch.randn(lq.shape, generator=generator)
        lq_noisy = self.low_res_scheduler.add_noise(lq_m11, augmentation, levels)
        latents = torch.randn((b, t, self.latent_channels, h, w), generator=generator)
        latents = latents * float(self.scheduler.init_noise_sigma)

        text = self.encode_prompt(prompt, b)
        # without a text encoder both branches see zero tokens: guidance would change nothing, so it is skipped
        use_guidance = guidance_scale > 1.0 and self.text_encoder is not None and self.tokenizer is not None
        uncond_text = self.encode_prompt(negative_prompt, b) if use_guidance else None
        if uncond_text is not None and uncond_text.shape != text.shape:
            raise InputError(f"prompt and negative_prompt token shapes differ: {tuple(text.shape)} vs "
                             f"{tuple(uncond_text.shape)}")
        flows = estimate_bidirectional_flows(self.flow_net, lq_m11, device=self.device) if steps and t > 1 else None
        cond = dict(noise_level=levels.to(self.device), text=text, uncond_text=uncond_text,
                    guidance_scale=float(guidance_scale))

        def model(x: torch.Tensor, timestep: torch.Tensor, step: Step) -> torch.Tensor:
            return predict_over_tiles(
                lambda piece, lq: self.guided_prediction(piece, timestep, lq, **cond), x, context={"lq": lq_noisy},
                window=window, window_overlap=window_overlap, tile=tile, tile_overlap=tile_overlap,
                window_weights=window_blend, tile_weights_kind="feather", device=self.device)

        def propagate(x0: torch.Tensor, step: Step) -> torch.Tensor | None:
            return propagate_latents(x0, *flows) if step.index in steps else None

        return denoise(self.scheduler, latents, model, num_inference_steps=num_inference_steps,
                       on_x0=propagate if flows is not None else None, progress=progress)

    @torch.no_grad()
    def forward(
        self,
        lq: torch.Tensor,
        *,
        prompt: str | Sequence[str] = _DEFAULT_PROMPT,
        negative_prompt: str | Sequence[str] = _DEFAULT_NEGATIVE_PROMPT,
        noise_level: int = 120,
        guidance_scale: float = 6.0,
        num_inference_steps: int = 30,
        propagation_steps: Iterable[int] = (),
        color_fix: str = "wavelet",
        seed: int = 0,
        window: int | None = 8,
        window_overlap: int = 2,
        window_blend: str = "feather",
        tile: int | None = 256,
        tile_overlap: int = 64,
        vae_chunk: int = 3,
        progress: bool = True,
        first_frame: int = 0,
    ) -> torch.Tensor:
        """Upscale a clip (``pipeline(lq, ...)``).

        Args:
            lq: (b, t, 3, h, w) float in [0, 1], any device.
            prompt: text of the conditional branch (one string, or b strings).
            negative_prompt: text of the unconditional branch of classifier-free guidance.
            noise_level: LQ noise augmentation level, integer in [0, 350] (official default 120; higher = more
                generation, less fidelity).
            guidance_scale: classifier-free guidance weight; guidance is used only when > 1 (official 6) and a
                text encoder is loaded (without one both branches would see the same zero tokens).
            num_inference_steps: DDIM steps (official 30).
            propagation_steps: indices (0-based, in the order of denoising) of the steps after which x0 is fused
                along RAFT flows (official ``-p``, e.g. (24, 26, 28)); needs ``components.flow_net``.
            color_fix: ``'wavelet'`` (paper), ``'adain'`` or ``'none'`` (official script default).
            seed: seed of the CPU generator for all random numbers (with ``first_frame``:
                :func:`zoo.diffusion.sampler.chunk_generator`).
            window, window_overlap: temporal UNet windows (official 8 / 2); None: the whole clip at once.
            window_blend: weights of overlapping windows: ``'feather'`` (default, the shared cross-fade),
                ``'uniform'`` (a plain mean) or ``'gaussian'``.
            tile, tile_overlap: square spatial tiles in LQ (= latent) pixels (default 256 / 64); None: whole frames.
            vae_chunk: frames per VAE decoder call (official 3).
            progress: tqdm bars.
            first_frame: index of ``lq``'s first frame in the video (streamed chunks draw their own noise).

        Returns:
            sr: (b, t, 3, 4h, 4w) CPU float32 in [0, 1].

        Raises:
            InputError: ``lq`` not (b, t, 3, h, w) float in [0, 1]; prompts not matching the batch.
            ConfigError: invalid options (noise level, steps, windows, tiles, colour fix; propagation without a
                flow net).
        """
        latents = self.sample_latents(lq, prompt=prompt, negative_prompt=negative_prompt, noise_level=noise_level,
                                      guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                                      propagation_steps=propagation_steps, window=window,
                                      window_overlap=window_overlap, window_blend=window_blend, tile=tile,
                                      tile_overlap=tile_overlap, progress=progress,
                                      generator=chunk_generator(int(seed), int(first_frame)))
        return self.decode_latents(latents, lq, color_fix=color_fix, tile=tile, tile_overlap=tile_overlap,
                                   vae_chunk=vae_chunk, progress=progress)

    def as_upscaler(self, **options: object) -> UpscaleAVideoUpscaler:
        """An ``nn.Module`` ``fn(lq) -> sr`` with fixed sampling ``options`` (keywords of :meth:`forward`), for
        :func:`zoo.inference.upscale_video` / :func:`zoo.inference.upscale_tensor` / ``VSRSystem.upscale``.

        Raises:
            ConfigError: unknown option names.
        """
        return UpscaleAVideoUpscaler(self, SamplingOptions(**_check_option_names(options)))


class UpscaleAVideoUpscaler(SamplerUpscaler):
    """:class:`~zoo.diffusion.sampler.SamplerUpscaler` of the Upscale-A-Video sampler: ``forward(lq (b, t, 3, h, w)
    [0, 1]) -> sr (b, t, 3, 4h, 4w) [0, 1]`` (CPU float32) with fixed :class:`SamplingOptions`; refuses inputs too small
    for latent propagation before any work (:meth:`check_input_size`)."""

    def __init__(self, pipeline: UpscaleAVideoPipeline, options: SamplingOptions | None = None) -> None:
        super().__init__(pipeline, options or SamplingOptions())

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse LQ frames too small for latent propagation before any work (RAFT runs on whole LQ frames).

        Called by :func:`zoo.inference.upscale_video` once the input's size is known.

        Raises:
            InputError: ``propagation_steps`` are set and ``min(height, width) < RAFT_MIN_SIZE`` (128 px).
        """
        if self.options.propagation_steps and min(height, width) < RAFT_MIN_SIZE:
            raise InputError(f"latent propagation runs RAFT on the LQ frames, which needs frames of at least "
                             f"{RAFT_MIN_SIZE}x{RAFT_MIN_SIZE} px (torchvision raft_large); got {width}x{height}: drop "
                             "the propagation steps for this input")


def _check_option_names(options: dict[str, object]) -> dict[str, object]:
    known = set(SamplingOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown Upscale-A-Video sampling options {unknown}; known: {sorted(known)}")
    if "propagation_steps" in options:
        options = dict(options, propagation_steps=tuple(options["propagation_steps"]))
    return options


def _check_steps(num_inference_steps: int, propagation_steps: Iterable[int]) -> set[int]:
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
    steps = {int(i) for i in propagation_steps}
    bad = sorted(i for i in steps if not 0 <= i < num_inference_steps)
    if bad:
        raise ConfigError(f"propagation_steps {bad} are outside [0, {num_inference_steps})")
    return steps
