"""Upscale-A-Video sampling: windowed, tiled DDIM with classifier-free guidance, latent propagation, colour fix.

Zhou et al., "Upscale-A-Video", CVPR 2024, Sec. 3.2-3.3 and the official inference code (sczhou/Upscale-A-Video
``inference_upscale_a_video.py``, ``models_video/pipeline_upscale_a_video.py``, ``models_video/scheduling_ddim.py``).
One call of :class:`UpscaleAVideoPipeline` upscales a clip ``lq`` (b, t, 3, h, w) in [0, 1] by the VAE's factor (4):

1. **Conditioning.** ``lq`` is mapped to [-1, 1] and noise-augmented by the LQ scheduler at ``noise_level``
   (``low_res_scheduler.add_noise``; default 120 of at most 350); the UNet also gets ``noise_level`` as its class
   label. Text: the CLIP text encoder's last hidden states of ``prompt`` and ``negative_prompt`` (official defaults
   "best quality, extremely detailed" / "blur, worst quality"; the official script prepends a LLaVA caption, not
   done here).
2. **Denoising.** DDIM (``num_inference_steps`` 30, eta 0) from Gaussian latents at the LQ resolution. At every
   step, for every spatial tile and every temporal window (8 frames, 2 shared), the UNet predicts v for the
   conditional and unconditional text in one batch; guidance ``v_u + g (v_c - v_u)`` (``g`` = 6, used when > 1).
   Predictions of overlapping windows are averaged per frame; tiles are blended with feathered weights
   (:func:`zoo.inference.blend_weights`). Then ``x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v``,
   ``eps = sqrt(a_t) v + sqrt(1 - a_t) x_t``; at the ``propagation_steps`` x0 is fused along RAFT flows
   (:func:`zoo.layers.latent_propagation.propagate_latents`); ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps``
   (official ``step_v0`` / ``step_vt``).
3. **Decoding.** The VAE decodes ``vae_chunk`` (3) frames at a time (its GroupNorm pools over those frames, as in the
   official code), tile by tile with feathered blending when the frame is tiled; the LQ-conditioned temporal
   decoder gets the clean LQ frames. Output clamped to [-1, 1], colour-corrected against the bicubic-upsampled LQ
   (wavelet or AdaIN, :mod:`zoo.layers.color`), mapped to [0, 1].

Memory. The clip-level state (latents, LQ, predictions, output) lives on the CPU; only one tile x window (x2 for
guidance) is on the accelerator at a time, so accelerator memory does not grow with the clip's length or size.
The CPU holds the latents (``b t 4 h w``) and the output (``b t 3 4h 4w``); for long videos call the sampler through
:func:`zoo.inference.upscale_video` (via :meth:`UpscaleAVideoPipeline.as_upscaler`), which feeds it chunks.

Differences from the official code, by design:

- Spatial tiles are blended in latent space at every step (MultiDiffusion-style, as the paper's "overlapping
  patches") and in pixel space when decoding; the official script runs the whole pipeline per tile
  (256 LQ px + 64 px context on each side, only when ``h w >= 384^2``) and pastes the tile centres without
  blending. Here tiles are ``tile`` px and start every ``tile - tile_overlap`` px.
- Overlapping windows: the plain mean over the windows covering a frame; the official code averages each new
  window with the running value 0.5 / 0.5 (the same for two windows, unequal weights when three overlap) and can
  compute the last window twice.
- Random numbers come from one CPU generator seeded with ``seed`` (LQ augmentation noise first, then the initial
  latents, as the official order), drawn for the whole clip, so tiling and windowing do not change them.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zoo.errors import ConfigError, InputError
from zoo.inference import blend_weights, plan_windows
from zoo.layers.color import COLOR_FIXES, apply_color_fix
from zoo.layers.latent_propagation import estimate_bidirectional_flows, propagate_latents
from zoo.models.upscale_a_video.net import UpscaleAVideoComponents

__all__ = ["DEFAULT_LOW_RES_SCHEDULER", "DEFAULT_SCHEDULER", "SamplingOptions", "UpscaleAVideoPipeline",
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
    tile: int | None = 256
    tile_overlap: int = 64
    vae_chunk: int = 3
    progress: bool = False


def _cross_attention_dim(unet: nn.Module) -> int:
    """Channels of the text tokens the UNet attends to (1024 for SD x4)."""
    for module in unet.modules():
        if getattr(module, "is_cross_attention", False):
            return int(module.cross_attention_dim)
    return 1024


class UpscaleAVideoPipeline(nn.Module):
    """The Upscale-A-Video sampler around :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoComponents`.

    Registers the components' networks under the same names (``unet``, ``vae``, ``text_encoder``, ``flow_net``), so
    its state dict is the components'. Runs where its parameters are (``pipeline.to('cuda')``); fp16/bf16 UNets
    work (predictions are accumulated in float32 on the CPU).

    Args:
        components: from :func:`zoo.hub_diffusion.load_upscale_a_video`. Missing schedulers fall back to the SD x4
            upscaler's (:data:`DEFAULT_SCHEDULER`, :data:`DEFAULT_LOW_RES_SCHEDULER`); a missing text encoder gives
            zero text embeddings (with a warning); a missing flow net disables ``propagation_steps``.

    Raises:
        ConfigError: UNet and VAE disagree on the latent channels, or the scheduler uses thresholding / an
            unsupported prediction type.
    """

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
        self.cross_attention_dim = _cross_attention_dim(self.unet)
        self._warned_no_text = False

    # ------------------------------------------------------------------ properties
    @property
    def scale(self) -> int:
        """Upscaling factor: the VAE's (4); latents have the LQ resolution."""
        return int(self.vae.downscale)

    @property
    def device(self) -> torch.device:
        """Where the UNet runs."""
        return self.unet.conv_in.weight.device

    # ------------------------------------------------------------------ text
    def encode_prompt(self, prompt: str | Sequence[str], batch: int) -> torch.Tensor:
        """Text tokens for the UNet's cross-attention.

        Args:
            prompt: one string for the whole batch, or ``batch`` strings.
            batch: clips in the batch.

        Returns:
            (batch, n, cross_attention_dim) on :attr:`device`: the text encoder's last hidden states (tokens padded
            to the tokenizer's length, at most the encoder's positions); zeros (n = 77) with a one-time warning
            when the components have no text encoder.

        Raises:
            InputError: a list of prompts whose length is not ``batch``.
        """
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch:
            raise InputError(f"got {len(prompts)} prompts for a batch of {batch} clips")
        if self.text_encoder is None or self.tokenizer is None:
            if not self._warned_no_text:
                warnings.warn("Upscale-A-Video: no text encoder loaded; using zero text embeddings (prompts and "
                              "classifier-free guidance have no effect)", stacklevel=3)
                self._warned_no_text = True
            return torch.zeros(batch, 77, self.cross_attention_dim, device=self.device)
        config = getattr(self.text_encoder, "config", None)
        max_length = min(int(self.tokenizer.model_max_length), int(getattr(config, "max_position_embeddings", 77)))
        tokens = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device) if getattr(config, "use_attention_mask", False) else None
        return self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0].to(self.device)

    # ------------------------------------------------------------------ denoising pieces
    def guided_prediction(self, latents: torch.Tensor, timestep: torch.Tensor | int, lq: torch.Tensor,
                          noise_level: torch.Tensor, text: torch.Tensor, uncond_text: torch.Tensor | None,
                          guidance_scale: float) -> torch.Tensor:
        """UNet output for one tile x window, with classifier-free guidance when ``uncond_text`` is given.

        Args:
            latents: (b, n, 4, h, w) noisy latents on :attr:`device`.
            timestep: diffusion step.
            lq: (b, n, 3, h, w) noise-augmented LQ in [-1, 1] (same h, w).
            noise_level: (b,) long, the augmentation level (class label).
            text, uncond_text: (b, k, d) conditional / unconditional tokens; ``uncond_text=None`` skips guidance.
            guidance_scale: ``g`` in ``v_u + g (v_c - v_u)`` (official Eq. of Ho & Salimans 2022).

        Returns:
            (b, n, 4, h, w) float32 on :attr:`device`. With ``guidance_scale`` 1 this equals the conditional
            prediction (up to rounding).
        """
        model_in = self.scheduler.scale_model_input(latents, timestep)
        if uncond_text is None:
            return self.unet(model_in, timestep, lq, noise_level, text).float()
        v = self.unet(torch.cat([model_in, model_in]), timestep, torch.cat([lq, lq]),
                      torch.cat([noise_level, noise_level]), torch.cat([uncond_text, text]))
        v_uncond, v_cond = v.float().chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    def _predict_tile(self, latents: torch.Tensor, lq: torch.Tensor, windows: list[tuple[int, int]],
                      **cond: object) -> torch.Tensor:
        """Windowed prediction over one spatial tile (CPU in, CPU float32 out): mean over the covering windows."""
        if len(windows) == 1:
            return self.guided_prediction(latents.to(self.device), lq=lq.to(self.device), **cond).cpu()
        out = torch.zeros(latents.shape, dtype=torch.float32)
        count = torch.zeros(latents.shape[1])
        for start, end in windows:
            v = self.guided_prediction(latents[:, start:end].to(self.device), lq=lq[:, start:end].to(self.device),
                                       **cond)
            out[:, start:end] += v.cpu()
            count[start:end] += 1
        return out / rearrange(count, "t -> 1 t 1 1 1")

    def predict(self, latents: torch.Tensor, lq: torch.Tensor, *, windows: list[tuple[int, int]],
                rows: list[tuple[int, int]], cols: list[tuple[int, int]], **cond: object) -> torch.Tensor:
        """Guided model output for the whole clip at one step: windows averaged, tiles feather-blended.

        Args:
            latents: (b, t, 4, h, w) CPU float32.
            lq: (b, t, 3, h, w) CPU, noise-augmented LQ in [-1, 1].
            windows: temporal windows ``[start, end)`` (:func:`zoo.inference.plan_windows`).
            rows, cols: spatial tile spans in latent pixels.
            **cond: ``timestep``, ``noise_level``, ``text``, ``uncond_text``, ``guidance_scale`` of
                :meth:`guided_prediction`.

        Returns:
            (b, t, 4, h, w) CPU float32.
        """
        if len(rows) == 1 and len(cols) == 1:
            return self._predict_tile(latents, lq, windows, **cond)
        acc = torch.zeros(latents.shape, dtype=torch.float32)
        weight_sum = torch.zeros(latents.shape[-2:])
        for r, (y0, y1) in enumerate(rows):
            for c, (x0, x1) in enumerate(cols):
                # feathered weights, kept positive so every latent pixel gets a prediction
                weight = (blend_weights(rows, r)[:, None] * blend_weights(cols, c)[None, :]).clamp_min(1e-3)
                v = self._predict_tile(latents[..., y0:y1, x0:x1], lq[..., y0:y1, x0:x1], windows, **cond)
                acc[..., y0:y1, x0:x1] += v * weight
                weight_sum[y0:y1, x0:x1] += weight
        return acc / weight_sum

    def _alphas(self, timestep: torch.Tensor, num_inference_steps: int) -> tuple[float, float]:
        """``(alpha_bar_t, alpha_bar_prev)`` of a DDIM step (prev = t - 1000 // steps; final = alpha_bar at -1)."""
        t = int(timestep)
        prev = t - self.scheduler.config.num_train_timesteps // num_inference_steps
        alpha = float(self.scheduler.alphas_cumprod[t])
        alpha_prev = float(self.scheduler.alphas_cumprod[prev]) if prev >= 0 else float(
            self.scheduler.final_alpha_cumprod)
        return alpha, alpha_prev

    def split_prediction(self, model_output: torch.Tensor, latents: torch.Tensor,
                         alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted clean latents and noise from the model output (DDIM Eq. 12; official ``step_v0``).

        v-prediction: ``x0 = sqrt(a) x_t - sqrt(1 - a) v``, ``eps = sqrt(a) v + sqrt(1 - a) x_t``; epsilon
        prediction: ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``. x0 is clamped when the scheduler's ``clip_sample``.

        Returns:
            ``(x0, eps)``, shaped as ``latents``.
        """
        sa, sb = alpha**0.5, (1.0 - alpha) ** 0.5
        if self.scheduler.config.prediction_type == "v_prediction":
            x0, eps = sa * latents - sb * model_output, sa * model_output + sb * latents
        else:
            x0, eps = (latents - sb * model_output) / sa, model_output
        if self.scheduler.config.clip_sample:
            limit = self.scheduler.config.clip_sample_range
            x0 = x0.clamp(-limit, limit)
        return x0, eps

    @staticmethod
    def ddim_update(x0: torch.Tensor, eps: torch.Tensor, alpha_prev: float) -> torch.Tensor:
        """Deterministic DDIM step (eta 0): ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps`` (official
        ``step_vt``)."""
        return alpha_prev**0.5 * x0 + (1.0 - alpha_prev) ** 0.5 * eps

    # ------------------------------------------------------------------ decoding
    def _decode_tiles(self, latents: torch.Tensor, lq: torch.Tensor, rows: list[tuple[int, int]],
                      cols: list[tuple[int, int]]) -> torch.Tensor:
        """VAE-decode (b, n, 4, h, w) latents tile by tile; returns (b, n, 3, s h, s w) CPU float32 in [-1, 1]."""
        s = self.scale
        dtype = self.vae.post_quant_conv.weight.dtype
        autocast = (torch.autocast(self.device.type, enabled=False) if self.device.type in ("cuda", "cpu")
                    else contextlib.nullcontext())

        def decode(z: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            with autocast:
                out = self.vae.decode(z.to(self.device, dtype), image.to(self.device, dtype))
            return out.float().clamp(-1.0, 1.0).cpu()

        if len(rows) == 1 and len(cols) == 1:
            return decode(latents, lq)
        b, n, _, h, w = latents.shape
        acc = torch.zeros(b, n, 3, h * s, w * s)
        weight_sum = torch.zeros(h * s, w * s)
        for r, (y0, y1) in enumerate(rows):
            for c, (x0, x1) in enumerate(cols):
                weight = (blend_weights(rows, r, s)[:, None] * blend_weights(cols, c, s)[None, :]).clamp_min(1e-3)
                out = decode(latents[..., y0:y1, x0:x1], lq[..., y0:y1, x0:x1])
                acc[..., y0 * s:y1 * s, x0 * s:x1 * s] += out * weight
                weight_sum[y0 * s:y1 * s, x0 * s:x1 * s] += weight
        return acc / weight_sum

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, lq: torch.Tensor, *, color_fix: str = "wavelet",
                       tile: int | None = 256, tile_overlap: int = 64, vae_chunk: int = 3,
                       progress: bool = False) -> torch.Tensor:
        """Decode sampled latents to frames, ``vae_chunk`` frames at a time, tiled, colour-corrected.

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
        _check_tiling(tile, tile_overlap)
        if vae_chunk < 1:
            raise ConfigError(f"vae_chunk must be >= 1; got {vae_chunk}")
        if color_fix not in COLOR_FIXES:
            raise ConfigError(f"color_fix must be one of {COLOR_FIXES}; got {color_fix!r}")
        latents = latents.detach().to("cpu", torch.float32)
        lq = _check_lq(lq).mul(2.0).sub(1.0)
        b, t, _, h, w = latents.shape
        s = self.scale
        rows, cols = plan_windows(h, tile, tile_overlap), plan_windows(w, tile, tile_overlap)
        sr = torch.empty(b, t, 3, h * s, w * s)
        for start in tqdm(range(0, t, vae_chunk), desc="decoding", disable=not progress, leave=False):
            end = min(t, start + vae_chunk)
            frames = self._decode_tiles(latents[:, start:end], lq[:, start:end], rows, cols)
            if color_fix != "none":
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
        tile: int | None = 256,
        tile_overlap: int = 64,
        progress: bool = True,
    ) -> torch.Tensor:
        """Run the denoising loop; returns the final latents (b, t, 4, h, w) CPU float32. Arguments: :meth:`forward`."""
        lq = _check_lq(lq)
        b, t, _, h, w = lq.shape
        steps = _check_steps(num_inference_steps, propagation_steps)
        max_level = getattr(self.unet, "max_noise_level", 350)
        if isinstance(noise_level, bool) or int(noise_level) != noise_level or not 0 <= noise_level <= max_level:
            raise ConfigError(f"noise_level must be an integer in [0, {max_level}]; got {noise_level!r}")
        noise_level = int(noise_level)
        _check_tiling(window, window_overlap, name="window")
        _check_tiling(tile, tile_overlap)
        if steps and self.flow_net is None:
            raise ConfigError("propagation_steps need a flow network (RAFT): load the released folder with its "
                              "propagator/raft-things.pth, or pass raft_path to load_upscale_a_video")

        generator = torch.Generator().manual_seed(int(seed))
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
        flows = None
        if steps and t > 1:
            flows = estimate_bidirectional_flows(self.flow_net, lq_m11, device=self.device)

        self.scheduler.set_timesteps(num_inference_steps)
        windows = plan_windows(t, window, window_overlap)
        rows, cols = plan_windows(h, tile, tile_overlap), plan_windows(w, tile, tile_overlap)
        cond = dict(noise_level=levels.to(self.device), text=text, uncond_text=uncond_text,
                    guidance_scale=float(guidance_scale))
        bar = tqdm(self.scheduler.timesteps, desc="denoising", disable=not progress, leave=False)
        for i, timestep in enumerate(bar):
            v = self.predict(latents, lq_noisy, windows=windows, rows=rows, cols=cols, timestep=timestep, **cond)
            alpha, alpha_prev = self._alphas(timestep, num_inference_steps)
            x0, eps = self.split_prediction(v, latents, alpha)
            if flows is not None and i in steps:
                x0 = propagate_latents(x0, *flows)
            latents = self.ddim_update(x0, eps, alpha_prev)
        return latents

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
        tile: int | None = 256,
        tile_overlap: int = 64,
        vae_chunk: int = 3,
        progress: bool = True,
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
            seed: seed of the CPU generator for all random numbers.
            window, window_overlap: temporal UNet windows (official 8 / 2); None: the whole clip at once.
            tile, tile_overlap: square spatial tiles in LQ (= latent) pixels (default 256 / 64); None: whole frames.
            vae_chunk: frames per VAE decoder call (official 3).
            progress: tqdm bars.

        Returns:
            sr: (b, t, 3, 4h, 4w) CPU float32 in [0, 1].

        Raises:
            InputError: ``lq`` not (b, t, 3, h, w) float in [0, 1]; prompts not matching the batch.
            ConfigError: invalid options (noise level, steps, windows, tiles, colour fix; propagation without a
                flow net).
        """
        latents = self.sample_latents(lq, prompt=prompt, negative_prompt=negative_prompt, noise_level=noise_level,
                                      guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                                      propagation_steps=propagation_steps, seed=seed, window=window,
                                      window_overlap=window_overlap, tile=tile, tile_overlap=tile_overlap,
                                      progress=progress)
        return self.decode_latents(latents, lq, color_fix=color_fix, tile=tile, tile_overlap=tile_overlap,
                                   vae_chunk=vae_chunk, progress=progress)

    def as_upscaler(self, **options: object) -> UpscaleAVideoUpscaler:
        """An ``nn.Module`` ``fn(lq) -> sr`` with fixed sampling ``options`` (keywords of :meth:`forward`), for
        :func:`zoo.inference.upscale_video` / :func:`zoo.inference.upscale_tensor` / ``VSRSystem.upscale``.

        Raises:
            ConfigError: unknown option names.
        """
        return UpscaleAVideoUpscaler(self, SamplingOptions(**_check_option_names(options)))


class UpscaleAVideoUpscaler(nn.Module):
    """``nn.Module`` adapter: ``forward(lq (b, t, 3, h, w) [0, 1]) -> sr (b, t, 3, 4h, 4w) [0, 1]`` (CPU float32).

    Holds the pipeline (moved with ``.to(device)``) and a :class:`SamplingOptions`; ``scale`` is the pipeline's.
    """

    def __init__(self, pipeline: UpscaleAVideoPipeline, options: SamplingOptions | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.options = options or SamplingOptions()
        self.scale = pipeline.scale

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.pipeline(lq, **asdict(self.options))


def _check_option_names(options: dict[str, object]) -> dict[str, object]:
    known = set(SamplingOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown Upscale-A-Video sampling options {unknown}; known: {sorted(known)}")
    if "propagation_steps" in options:
        options = dict(options, propagation_steps=tuple(options["propagation_steps"]))
    return options


def _check_lq(lq: torch.Tensor) -> torch.Tensor:
    """Validate ``lq`` (b, t, 3, h, w) float in [0, 1]; return it on the CPU as float32, clamped."""
    if not isinstance(lq, torch.Tensor) or lq.ndim != 5 or lq.shape[2] != 3 or not lq.is_floating_point():
        shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise InputError(f"lq must be a float (b, t, 3, h, w) tensor in [0, 1]; got {shape}")
    lq = lq.detach().to("cpu", torch.float32)
    low, high = float(lq.min()), float(lq.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise InputError(f"lq values must be in [0, 1] (got [{low:.3f}, {high:.3f}]); [-1, 1] input? use (x + 1) / 2")
    return lq.clamp(0.0, 1.0)


def _check_tiling(size: int | None, overlap: int, *, name: str = "tile") -> None:
    if size is None:
        return
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"{name} must be a positive integer or None; got {size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ConfigError(f"{name}_overlap must be an integer in [0, {name}); got {overlap!r} for {name}={size}")


def _check_steps(num_inference_steps: int, propagation_steps: Iterable[int]) -> set[int]:
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
    steps = {int(i) for i in propagation_steps}
    bad = sorted(i for i in steps if not 0 <= i < num_inference_steps)
    if bad:
        raise ConfigError(f"propagation_steps {bad} are outside [0, {num_inference_steps})")
    return steps
