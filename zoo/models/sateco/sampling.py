"""The SATeCo pipeline: video upscaler -> frozen SD (UNet + VAE) guided by SFA/TFA -> video refiner.

Chen et al., CVPR 2024, Sec. 3 and Fig. 2, on the shared latent-diffusion layer (:mod:`zoo.diffusion`). One call of
:class:`SATeCoPipeline` upscales a clip ``lq`` (b, t, 3, h, w) in [0, 1] by 4:

1. **Video upscaler.** ``X_u = upscaler(lq)`` (:class:`~zoo.models.sateco.net.VideoUpscaler`), clamped to [0, 1], run
   over spatial tiles of ``tile`` LQ px (feather-blended). Frames are padded by replication to a multiple of 8 px
   (the VAE's factor) and the padding is cropped at the end.
2. **Latents.** ``Z = E(X_u)`` with the frozen VAE encoder (posterior mean, times the scaling factor), in chunks and
   latent tiles. The start of the reverse process is ``Z`` noised by the scheduler at the timestep where a fraction
   ``strength`` of the ``num_inference_steps`` remains (``add_noise``; img2img's convention: 1 starts from almost pure
   noise, 0.5 half-way). The paper gives no start timestep; ours is an option (default 0.5).
3. **Denoising** (:func:`zoo.diffusion.sampler.denoise`, DDIM's own ``step``, eta 0) over temporal windows of
   ``window`` frames (6 = the TFA tubelet length) sharing ``window_overlap`` and latent tiles, blended at every step by
   :func:`zoo.diffusion.sampler.predict_over_tiles`. Each window x tile: the latent encoder's guides
   ``G = E_z(Z)`` of the same window x tile, installed on the UNet's up blocks (:class:`~zoo.models.sateco.net.
   DecoderAdapters`), the frozen UNet's epsilon for the text tokens of ``prompt`` (default empty), with
   classifier-free guidance against ``negative_prompt`` when ``guidance_scale > 1`` (default 1: none).
4. **Decoding** (:func:`zoo.diffusion.vae.iter_decoded_chunks`) ``vae_chunk`` frames at a time (default 6: the
   decoder's TFA links 6 frames), tile by tile; each chunk x tile runs the frozen VAE encoder on the same region of
   X_u and hands its features (one per decoder resolution) to the decoder's adapters. ``X_d`` in [0, 1].
5. **Refiner.** ``X_H = w X_u + (1 - w) X_d + ResBlock([X_u, X_d])`` (:class:`~zoo.models.sateco.net.VideoRefiner`),
   over spatial tiles, clamped to [0, 1].

Memory: clip-level tensors (X_u, latents, predictions, output) stay on the CPU; one window x tile (x2 with guidance)
is on the accelerator at a time; :func:`zoo.inference.upscale_video` streams long videos in chunks (``as_upscaler``).
Random numbers: one CPU generator per streamed chunk (:func:`zoo.diffusion.sampler.chunk_generator`), drawn for the
whole chunk, so windows and tiles do not change them.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from einops import rearrange, repeat
from torch import nn

from zoo.diffusion.bases import SD21_BASE_SCHEDULER
from zoo.diffusion.sampler import SamplerUpscaler, Step, chunk_generator, classifier_free_guidance, denoise, predict_over_tiles
from zoo.diffusion.text import TextConditioning, cross_attention_dim
from zoo.diffusion.tiles import check_window, latent_tile, pad_to_multiple, run_over_tiles
from zoo.diffusion.vae import diffusers_decoder, diffusers_encoder, encode_chunked, iter_decoded_chunks
from zoo.errors import ConfigError
from zoo.layers.checks import sampler_input
from zoo.models.sateco.net import DecoderAdapters, LatentEncoder, VideoRefiner, VideoUpscaler, decoder_output_factors

__all__ = ["SATeCoPipeline", "SATeCoUpscaler", "SamplingOptions"]


@dataclass(frozen=True)
class SamplingOptions:
    """Keyword options of :meth:`SATeCoPipeline.forward` as one typed value (for systems and YAML).

    The paper gives none of these; defaults are ours (family README): DDIM 50 steps, strength 0.5, empty prompt, no
    guidance, 6-frame windows sharing 2, tiles of 128 LQ px (= 512 output px, SD 2.1-base's training size) sharing 32,
    VAE decoding 6 frames at a time.
    """

    num_inference_steps: int = 50
    strength: float = 0.5
    guidance_scale: float = 1.0
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    window: int | None = 6
    window_overlap: int = 2
    tile: int | None = 128
    tile_overlap: int = 32
    vae_chunk: int | None = 6
    progress: bool = False


# plain data: checkpoints that record it in their hyper-parameters load with torch.load(weights_only=True)
torch.serialization.add_safe_globals([SamplingOptions])

#: Adapter options (``adapters`` argument) and their defaults.
ADAPTER_DEFAULTS = dict(use_sfa=True, use_tfa=True, norm="group", head_dim=64, window=(6, 8, 8), position="learned")


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class SATeCoPipeline(TextConditioning, nn.Module):
    """SATeCo around a frozen Stable Diffusion UNet and VAE (see the module docstring).

    Sub-modules: ``upscaler``, ``unet``, ``vae``, ``text_encoder`` (optional), ``latent_encoder``, ``unet_adapters``,
    ``vae_adapters`` (None: adapters in the UNet only, the paper's ablation), ``refiner``. The adapters are hooked onto
    ``unet.up_blocks`` and ``vae.decoder.up_blocks``.

    Args:
        unet: diffusers ``UNet2DConditionModel`` with ``in_channels == out_channels ==`` the VAE's latent channels.
        vae: diffusers ``AutoencoderKL``.
        scheduler: the sampler's noise schedule (its config is used to build a ``DDIMScheduler``); None: SD 2.1-base's.
        text_encoder, tokenizer: CLIP text encoder and tokenizer; None: zero text tokens (prompts have no effect).
        upscaler: :class:`~zoo.models.sateco.net.VideoUpscaler` options (``scale`` 4).
        latent_encoder: :class:`~zoo.models.sateco.net.LatentEncoder` ``channels`` / ``num_blocks`` (as many levels as
            the UNet's decoder resolutions need: 3 for SD; extra levels are dropped).
        adapters: :class:`~zoo.models.sateco.net.GuidedAdapter` options (:data:`ADAPTER_DEFAULTS`).
        vae_adapters: adapters in the VAE decoder too (paper); False: UNet only.
        refiner: :class:`~zoo.models.sateco.net.VideoRefiner` options (``weight`` w = 0.5, ...).

    Raises:
        ConfigError: UNet and VAE that do not fit together, or invalid module options.
    """

    family_label = "SATeCo"

    def __init__(self, *, unet: nn.Module, vae: nn.Module, scheduler: object | None = None,
                 text_encoder: nn.Module | None = None, tokenizer: object | None = None,
                 upscaler: dict | None = None, latent_encoder: dict | None = None, adapters: dict | None = None,
                 vae_adapters: bool = True, refiner: dict | None = None) -> None:
        super().__init__()
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        latent_channels = int(vae.config.latent_channels)
        if int(unet.config.in_channels) != latent_channels or int(unet.config.out_channels) != latent_channels:
            raise ConfigError(f"UNet in/out channels {unet.config.in_channels}/{unet.config.out_channels} must equal "
                              f"the VAE's latent channels {latent_channels} (a Stable Diffusion base UNet)")
        self.latent_channels = latent_channels
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        config = dict(scheduler.config) if scheduler is not None else dict(SD21_BASE_SCHEDULER)
        # latents are not clipped: SD folders ship a PNDM config without clip_sample, whose DDIM default (True) would
        # clip x0 to [-1, 1] (diffusers' SD pipelines force False for the same reason)
        config["clip_sample"] = False
        self.scheduler = DDIMScheduler.from_config(config)
        if self.scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"scheduler prediction_type {self.scheduler.config.prediction_type!r} is not supported")
        self.cross_attention_dim = cross_attention_dim(unet)

        options = dict(upscaler or {})
        options.setdefault("scale", 4)
        self.upscaler = VideoUpscaler(**options)
        if self.upscaler.scale % self.vae_factor and self.vae_factor % self.upscaler.scale:
            raise ConfigError(f"upscaler scale {self.upscaler.scale} and VAE factor {self.vae_factor} do not fit")

        # UNet decoder: up block j outputs at 1 / factor_j of the latent; E_z level log2(factor_j) guides it
        unet_factors = decoder_output_factors(len(unet.up_blocks))
        levels = int(math.log2(max(unet_factors))) + 1
        le = dict(latent_encoder or {})
        channels = tuple(le.pop("channels", (64, 128, 256)))
        if len(channels) < levels:
            raise ConfigError(f"latent_encoder needs {levels} levels for this UNet; got channels {channels}")
        self.latent_encoder = LatentEncoder(in_channels=latent_channels, channels=channels[:levels], **le)
        self._unet_levels = [int(math.log2(f)) for f in unet_factors]
        adapter = {**ADAPTER_DEFAULTS, **(adapters or {})}
        unknown = sorted(set(adapter) - set(ADAPTER_DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown adapter options {unknown}; known: {sorted(ADAPTER_DEFAULTS)}")
        up_channels = list(reversed(unet.config.block_out_channels))
        self.unet_adapters = DecoderAdapters(up_channels, [channels[k] for k in self._unet_levels], **adapter)
        self.unet_adapters.attach(unet.up_blocks)

        # VAE decoder: up block j outputs at 1 / factor_j of the image; the encoder's features at that factor guide it
        vae_channels = list(vae.config.block_out_channels)
        vae_factors = decoder_output_factors(len(vae.decoder.up_blocks))
        self._vae_levels = [int(math.log2(f)) for f in vae_factors]
        self.vae_adapters = None
        if vae_adapters:
            self.vae_adapters = DecoderAdapters(list(reversed(vae_channels)),
                                                [vae_channels[i] for i in self._vae_levels], **adapter)
            self.vae_adapters.attach(vae.decoder.up_blocks)
        self.refiner = VideoRefiner(**(refiner or {}))

    # ------------------------------------------------------------------ properties
    @property
    def scale(self) -> int:
        """Upscaling factor (the upscaler's: 4)."""
        return int(self.upscaler.scale)

    # ------------------------------------------------------------------ pieces (also used by training)
    def latent_guides(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``G = E_z(Z)``: Z (b, t, c, h, w) -> one guide (b, t, c_j, h_j, w_j) per UNet up block."""
        b = z.shape[0]
        levels = self.latent_encoder(rearrange(z, "b t c h w -> (b t) c h w"))
        return [rearrange(levels[k], "(b t) c h w -> b t c h w", b=b) for k in self._unet_levels]

    def unet_prediction(self, x: torch.Tensor, timestep: torch.Tensor | int, *, z: torch.Tensor,
                        text: torch.Tensor) -> torch.Tensor:
        """The frozen UNet's output for noisy latents ``x`` (b, n, c, h, w), guided by ``E_z(z)`` through the adapters.

        Args:
            x: model input (b, n, c, h, w).
            timestep: scalar, or (b,) per clip.
            z: (b, n, c, h, w) latent code of X_u (same window and tile).
            text: (b, k, d) text tokens.

        Returns:
            (b, n, c, h, w) in the UNet's output dtype. The adapters' guidance stays set after the call (so that
            checkpointed blocks recompute the same way in the backward pass).
        """
        b, n = x.shape[:2]
        self.unet_adapters.set_guidance(self.latent_guides(z), n)
        timestep = torch.as_tensor(timestep, device=x.device)
        timestep = repeat(timestep, "b -> (b n)", n=n) if timestep.ndim == 1 else timestep
        tokens = repeat(text.to(x.dtype), "b k d -> (b n) k d", n=n)
        out = self.unet(rearrange(x, "b n c h w -> (b n) c h w"), timestep, encoder_hidden_states=tokens).sample
        return rearrange(out, "(b n) c h w -> b n c h w", b=b)

    @torch.no_grad()
    def vae_guides(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Features of the frozen VAE encoder on ``frames`` (b, n, 3, H, W) in [-1, 1]: the output of each encoder
        level's last ResNet (level i at 1/2^i), one per decoder up block at that block's resolution. Runs the encoder's
        input convolution and its down blocks up to the deepest level needed (``DownEncoderBlock2D``: resnets, then
        the downsampler), not the rest of the encoder."""
        b = frames.shape[0]
        encoder = self.vae.encoder
        param = next(self.vae.parameters())
        x = encoder.conv_in(rearrange(frames, "b n c h w -> (b n) c h w").to(param.device, param.dtype))
        captured: list[torch.Tensor] = []
        # the encoder's own blocks in its order, up to the deepest level a decoder block needs (not its mid block)
        for block in encoder.down_blocks[:max(self._vae_levels) + 1]:
            for resnet in block.resnets:
                x = resnet(x, temb=None)
            captured.append(x)
            for down in block.downsamplers or []:
                x = down(x)
        return [rearrange(captured[i], "(b n) c h w -> b n c h w", b=b) for i in self._vae_levels]

    def decode_guided(self, z: torch.Tensor, x_u: torch.Tensor) -> torch.Tensor:
        """VAE-decode diffusion-space latents ``z`` (b, n, c, h, w) with the decoder adapters guided by X_u.

        Args:
            z: latents (diffusion space, times the scaling factor).
            x_u: (b, n, 3, f h, f w) upscaled frames in [-1, 1] (the encoder's features guide the decoder).

        Returns:
            (b, n, 3, f h, f w) float32 in about [-1, 1] (not clamped; differentiable w.r.t. the decoder adapters).
        """
        decode = diffusers_decoder(self.vae)
        if self.vae_adapters is None:
            return decode(z)
        self.vae_adapters.set_guidance(self.vae_guides(x_u), z.shape[1])
        try:
            return decode(z)
        finally:
            if not torch.is_grad_enabled():
                self.vae_adapters.set_guidance(None)

    # ------------------------------------------------------------------ sampling
    def guided_prediction(self, x: torch.Tensor, timestep: torch.Tensor, z: torch.Tensor, text: torch.Tensor,
                          uncond_text: torch.Tensor | None, guidance_scale: float) -> torch.Tensor:
        """UNet output for one window x tile with classifier-free guidance when ``uncond_text`` is given (float32)."""
        try:
            return classifier_free_guidance(
                lambda x, t, z, text: self.unet_prediction(x, t, z=z, text=text), x, timestep, cond={"text": text},
                uncond=None if uncond_text is None else {"text": uncond_text}, guidance_scale=guidance_scale,
                shared={"z": z})
        finally:
            self.unet_adapters.set_guidance(None)

    def _latent_tile(self, tile: int | None, tile_overlap: int) -> tuple[int | None, int]:
        """LQ-pixel tiles -> latent tiles (:func:`zoo.diffusion.tiles.latent_tile`)."""
        return latent_tile(tile, tile_overlap, scale=self.scale, vae_factor=self.vae_factor)

    @torch.no_grad()
    def upscale_lq(self, lq: torch.Tensor, *, tile: int | None = 128, tile_overlap: int = 32) -> torch.Tensor:
        """X_u = upscaler(lq) over LQ tiles: (b, t, 3, h, w) [0, 1] -> (b, t, 3, 4h, 4w) CPU float32 in [0, 1]."""
        param = next(self.upscaler.parameters())
        out = run_over_tiles(lambda x: self.upscaler(x).float(), lq, scale=self.scale, tile=tile,
                             tile_overlap=tile_overlap, device=param.device, dtype=param.dtype)
        return out.clamp(0.0, 1.0)

    def _first_step(self, num_inference_steps: int, strength: float) -> int:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
            raise ConfigError(f"strength must be in (0, 1]; got {strength!r}")
        run = int(round(strength * num_inference_steps))
        if run < 1:
            raise ConfigError(f"strength {strength} x {num_inference_steps} steps runs no denoising step; raise "
                              "either")
        return num_inference_steps - run

    @torch.no_grad()
    def forward(self, lq: torch.Tensor, *, num_inference_steps: int = 50, strength: float = 0.5,
                guidance_scale: float = 1.0, prompt: str | Sequence[str] = "",
                negative_prompt: str | Sequence[str] = "", seed: int = 0, window: int | None = 6,
                window_overlap: int = 2, tile: int | None = 128, tile_overlap: int = 32, vae_chunk: int | None = 6,
                progress: bool = False, first_frame: int = 0) -> torch.Tensor:
        """Upscale a clip (``pipeline(lq, ...)``).

        Args:
            lq: (b, t, 3, h, w) float in [0, 1], any device.
            num_inference_steps: DDIM steps of the full schedule.
            strength: fraction of the schedule that runs, in (0, 1]: the latent of X_u is noised to that level.
            guidance_scale: classifier-free guidance weight, used when > 1 and a text encoder is loaded.
            prompt, negative_prompt: text of the conditional / unconditional branch.
            seed: seed of the chunk's CPU generator (with ``first_frame``).
            window, window_overlap: temporal UNet windows (None: the whole clip).
            tile, tile_overlap: square tiles in LQ px for the upscaler, the UNet (latent tiles of ``tile / 2``), the
                VAE and the refiner (None: whole frames).
            vae_chunk: frames per VAE call (6: the decoder's TFA tubelet length).
            progress: tqdm bars.
            first_frame: index of ``lq``'s first frame in the video (streamed chunks draw their own noise).

        Returns:
            sr: (b, t, 3, 4h, 4w) CPU float32 in [0, 1].

        Raises:
            InputError: ``lq`` not (b, t, 3, h, w) float in [0, 1].
            ConfigError: invalid options.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
        first_step = self._first_step(num_inference_steps, strength)
        check_window(window, window_overlap, name="window")
        check_window(tile, tile_overlap, name="tile")
        if vae_chunk is not None and (isinstance(vae_chunk, bool) or not isinstance(vae_chunk, int) or vae_chunk < 1):
            raise ConfigError(f"vae_chunk must be a positive integer or None; got {vae_chunk!r}")
        lq = sampler_input(lq)
        b, t, _, h, w = lq.shape
        generator = chunk_generator(int(seed), int(first_frame))
        device = self.device

        x_u = pad_to_multiple(self.upscale_lq(lq, tile=tile, tile_overlap=tile_overlap), self.vae_factor)
        latent_tile, latent_overlap = self._latent_tile(tile, tile_overlap)
        encode = diffusers_encoder(self.vae)
        z = encode_chunked(encode, x_u * 2.0 - 1.0, factor=self.vae_factor, chunk=vae_chunk, tile=latent_tile,
                           tile_overlap=latent_overlap, device=device)
        self.scheduler.set_timesteps(num_inference_steps)
        start = self.scheduler.timesteps[first_step]
        noise = torch.randn(z.shape, generator=generator)
        latents = self.scheduler.add_noise(z, noise, start.reshape(1).long())

        text = self.encode_prompt(prompt, b)
        use_guidance = guidance_scale > 1.0 and self.text_encoder is not None and self.tokenizer is not None
        uncond_text = self.encode_prompt(negative_prompt, b) if use_guidance else None

        def model(x: torch.Tensor, timestep: torch.Tensor, step: Step) -> torch.Tensor:
            return predict_over_tiles(
                lambda piece, z: self.guided_prediction(piece, timestep, z, text, uncond_text, float(guidance_scale)),
                x, context={"z": z}, window=window, window_overlap=window_overlap, tile=latent_tile,
                tile_overlap=latent_overlap, device=device)

        latents = denoise(self.scheduler, latents, model, num_inference_steps=num_inference_steps,
                          first_step=first_step, progress=progress, desc="SATeCo denoising")
        return self.decode_and_refine(latents, x_u, tile=tile, tile_overlap=tile_overlap, vae_chunk=vae_chunk,
                                      progress=progress)[..., :4 * h, :4 * w]

    @torch.no_grad()
    def decode_and_refine(self, latents: torch.Tensor, x_u: torch.Tensor, *, tile: int | None = 128,
                          tile_overlap: int = 32, vae_chunk: int | None = 6, progress: bool = False) -> torch.Tensor:
        """Decode latents with the guided VAE and refine: (b, t, c, h, w), X_u (b, t, 3, f h, f w) [0, 1] ->
        X_H (b, t, 3, f h, f w) CPU float32 in [0, 1]."""
        latent_tile, latent_overlap = self._latent_tile(tile, tile_overlap)
        f = self.vae_factor
        folded = rearrange(x_u * 2.0 - 1.0, "b t c (h p) (w q) -> b t (c p q) h w", p=f, q=f)
        vae_dtype = next(self.vae.parameters()).dtype

        def decode(z: torch.Tensor, x_u: torch.Tensor) -> torch.Tensor:
            frames = rearrange(x_u, "b t (c p q) h w -> b t c (h p) (w q)", p=f, q=f).to(vae_dtype)
            with _no_autocast(z.device):
                return self.decode_guided(z, frames).clamp(-1.0, 1.0)

        refiner_param = next(self.refiner.parameters())
        # tiles are given in LQ px: the refiner works on the output grid
        pixel_tile = None if tile is None else tile * self.scale
        pixel_overlap = 0 if tile is None else tile_overlap * self.scale
        sr = torch.empty_like(x_u)
        for start, end, frames in iter_decoded_chunks(decode, latents, scale=f, chunk=vae_chunk, tile=latent_tile,
                                                      tile_overlap=latent_overlap, context={"x_u": folded},
                                                      device=self.device, progress=progress):
            x_d = frames.add(1.0).div(2.0).clamp(0.0, 1.0)
            refined = run_over_tiles(lambda x, x_d: self.refiner(x, x_d).float(), x_u[:, start:end], scale=1,
                                     tile=pixel_tile, tile_overlap=pixel_overlap, context={"x_d": x_d},
                                     device=refiner_param.device, dtype=refiner_param.dtype)
            sr[:, start:end] = refined.clamp(0.0, 1.0)
        return sr

    def as_upscaler(self, **options: object) -> SATeCoUpscaler:
        """An ``nn.Module`` ``fn(lq) -> sr`` with fixed sampling ``options`` (fields of :class:`SamplingOptions`).

        Raises:
            ConfigError: unknown option names.
        """
        known = set(SamplingOptions.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown SATeCo sampling options {unknown}; known: {sorted(known)}")
        return SATeCoUpscaler(self, SamplingOptions(**options))


class SATeCoUpscaler(SamplerUpscaler):
    """:class:`~zoo.diffusion.sampler.SamplerUpscaler` of the SATeCo pipeline: ``forward(lq (b, t, 3, h, w) [0, 1])
    -> sr (b, t, 3, 4h, 4w) [0, 1]`` (CPU float32) with fixed :class:`SamplingOptions`."""

    def __init__(self, pipeline: SATeCoPipeline, options: SamplingOptions | None = None) -> None:
        super().__init__(pipeline, options or SamplingOptions())
