"""The DC-VSR sampler: Stable Video Diffusion on spatio-temporal tiles with SAP, TAP and DSSAG.

Han et al., arXiv 2502.03502, Sec. 3 (Fig. 2) on the shared latent-diffusion layer (:mod:`zoo.diffusion`). One call
of :class:`DCVSRPipeline` upscales a clip ``lq`` (b, t, 3, h, w) in [0, 1] by 4:

1. **Condition.** ``I_up``: ``lq`` upsampled x4 by bicubic interpolation (torch's, a = -0.75), in [-1, 1], plus
   ``noise_aug_strength`` times Gaussian noise (SVD's noise augmentation of its conditioning image), encoded by the VAE
   encoder (posterior mode, NOT multiplied by the scaling factor: SVD's convention for the latent it concatenates) in
   chunks and tiles. Frames are padded by replication to a multiple of 2 LQ px (8 output px) and cropped at the end.
2. **Denoising** with diffusers' ``EulerDiscreteScheduler`` (EDM, v-prediction, Karras sigmas; its own
   ``scale_model_input`` and ``step``: :func:`zoo.diffusion.sampler.denoise`) from ``randn * init_noise_sigma``. Each
   step evaluates the UNet over spatio-temporal tiles of exactly ``window`` frames x ``tile`` LQ px (default 14 x 128 =
   14 x 64 latents, the paper's 64 x 64 x 14; smaller only where the clip is) sharing at least ``window_overlap``
   frames and ``tile_overlap`` px (50%; more where the tiles must fit the clip's extent), blended with
   Gaussian weights (:func:`zoo.diffusion.sampler.predict_over_tiles`). The UNet input is the scaled noisy latent and
   the condition latent concatenated on channels (SVD's 8 input channels), the image-embedding tokens
   (``image_embedding``: zeros, or the CLIP image embedding of the middle upsampled frame), and the added time ids
   ``[fps - 1, motion_bucket_id, noise_aug_strength]``. SAP / TAP / DSSAG act through the attention processors of
   :mod:`zoo.models.dc_vsr.attention`; TAP's backward steps visit the tiles from the last in time to the first.
3. **Guidance.** ``u + g (c - u)`` when ``guidance_scale > 1``, both branches in one batch; the unconditional branch
   gets a zero condition latent and zero image tokens (``negative='zeros'``, as SVD) or the same condition
   (``negative='lq'``: guidance is then DSSAG's detail guidance alone), and DSSAG's gamma in its self-attention.
4. **Decoding** with the temporal VAE decoder ``vae_chunk`` frames at a time (``num_frames`` of the chunk), tile by
   tile (:func:`zoo.diffusion.vae.iter_decoded_chunks`), to [0, 1].

Memory: the clip-level tensors (latents, condition, predictions, SAP stores, output) stay on the CPU; one tile (x2
with guidance) is on the accelerator at a time; :func:`zoo.inference.upscale_video` streams long videos in chunks.
Random numbers: one CPU generator per streamed chunk (:func:`zoo.diffusion.sampler.chunk_generator`), drawn for the
whole chunk (latent noise, then the augmentation noise), so tiles do not change them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import EulerDiscreteScheduler
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from zoo.diffusion.bases import SVD_SCHEDULER, is_svd_schedule
from zoo.diffusion.sampler import SamplerUpscaler, Step, chunk_generator, classifier_free_guidance, denoise, \
    predict_over_tiles
from zoo.diffusion.tiles import check_window, latent_tile, pad_to_multiple
from zoo.diffusion.vae import diffusers_decoder, diffusers_encoder, encode_chunked, iter_decoded_chunks
from zoo.errors import ConfigError
from zoo.layers.blocks import bicubic_skip
from zoo.layers.checks import sampler_input
from zoo.models.dc_vsr.attention import PropagationControl, TileState, dssag_gamma, install_processors, \
    propagation_layers

__all__ = ["CONDITIONING_DEFAULTS", "DCVSRPipeline", "DCVSRUpscaler", "PROPAGATION_DEFAULTS", "SamplingOptions"]


@dataclass(frozen=True)
class SamplingOptions:
    """Keyword options of :meth:`DCVSRPipeline.forward` as one typed value (for systems and YAML).

    Defaults: the paper's tiles (14 frames x 128 LQ px = 64 x 64 x 14 latents, 50% overlap, Gaussian blending), SAP,
    TAP and DSSAG on; the step count (25, SVD's default) and guidance weight (2) are ours (the paper gives neither).
    ``tile`` / ``tile_overlap`` are LQ pixels (x4 / 8 = latent pixels); ``vae_chunk``: frames per VAE decoder call;
    ``vae_tile`` / ``vae_tile_overlap``: the VAE's tiles in LQ pixels (ours: 128 sharing 32; the VAE has no attention
    across tiles to keep consistent, so a smaller overlap than the UNet's saves a third of its work at 720p).
    """

    num_inference_steps: int = 25
    guidance_scale: float = 2.0
    sap: bool = True
    tap: bool = True
    dssag: bool = True
    seed: int = 0
    window: int | None = 14
    window_overlap: int = 7
    tile: int | None = 128
    tile_overlap: int = 64
    vae_chunk: int | None = 14
    vae_tile: int | None = 128
    vae_tile_overlap: int = 32
    progress: bool = False


# plain data: checkpoints that record it in their hyper-parameters load with torch.load(weights_only=True)
torch.serialization.add_safe_globals([SamplingOptions])

#: ``propagation`` options: SAP's subsampling stride (ours), TAP's L (paper: 4), how many spatial self-attention
#: layers at each end propagate (paper: 2 and 2), which layers get DSSAG (``'all'`` spatial self-attention layers or
#: the ``'propagation'`` ones; ours), DSSAG's gamma schedule (:func:`~zoo.models.dc_vsr.attention.dssag_gamma`; rho
#: 0.5 from the paper, gamma_min ours) and the Gaussian blending sigma as a fraction of the tile (ours: 0.1, i.e. the
#: variance 0.01 of the tiled-diffusion VSR samplers).
PROPAGATION_DEFAULTS = dict(sap_stride=4, num_frames_kept=4, first_layers=2, last_layers=2, dssag_layers="all",
                            gamma_min=0.5, rho=0.5, gaussian_sigma=0.1)
#: ``conditioning`` options (ours; the paper does not say what its fine-tune feeds SVD's image and time-id inputs):
#: SVD's defaults for the time ids (fps 7 -> id 6, motion bucket 127, noise augmentation 0.02), zero image tokens,
#: and the SVD-style null condition for guidance.
CONDITIONING_DEFAULTS = dict(fps=7, motion_bucket_id=127, noise_aug_strength=0.02, image_embedding="zeros",
                             negative="zeros")

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _merge(defaults: dict, given: dict | None, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown DC-VSR {what} options {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


class DCVSRPipeline(nn.Module):
    """DC-VSR around a Stable Video Diffusion UNet and temporal VAE (module docstring).

    Sub-modules: ``unet`` (its spatial self-attention layers carry :class:`~zoo.models.dc_vsr.attention.
    PropagationAttnProcessor`), ``vae``, ``image_encoder`` (optional CLIP vision model). ``control`` is the state the
    processors share.

    Args:
        unet: diffusers ``UNetSpatioTemporalConditionModel`` with ``in_channels = 2 x`` the VAE's latent channels.
        vae: diffusers ``AutoencoderKLTemporalDecoder`` (or any diffusers VAE).
        scheduler: a scheduler whose config is SVD's EDM sampler (None: SVD img2vid's).
        image_encoder: transformers ``CLIPVisionModelWithProjection`` (``image_embedding='clip'`` only).
        propagation: :data:`PROPAGATION_DEFAULTS` keys.
        conditioning: :data:`CONDITIONING_DEFAULTS` keys.

    Raises:
        ConfigError: a UNet and VAE that do not fit, a scheduler that is not SVD's kind, unknown options, time ids the
            UNet's added embedding does not take, ``image_embedding='clip'`` without an image encoder.
    """

    def __init__(self, *, unet: nn.Module, vae: nn.Module, scheduler: object | None = None,
                 image_encoder: nn.Module | None = None, propagation: dict | None = None,
                 conditioning: dict | None = None) -> None:
        super().__init__()
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        latent_channels = int(vae.config.latent_channels)
        if int(unet.config.in_channels) != 2 * latent_channels or int(unet.config.out_channels) != latent_channels:
            raise ConfigError(f"UNet in/out channels {unet.config.in_channels}/{unet.config.out_channels} must be "
                              f"{2 * latent_channels}/{latent_channels} (noisy latent + condition latent of the VAE's "
                              f"{latent_channels} channels)")
        self.latent_channels = latent_channels
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        config = dict(scheduler.config) if scheduler is not None else dict(SVD_SCHEDULER)
        if not is_svd_schedule({**config, "_class_name": "EulerDiscreteScheduler"}):
            raise ConfigError("DC-VSR samples with SVD's EDM scheduler (EulerDiscreteScheduler, v_prediction, Karras "
                              f"sigmas, continuous timesteps); got prediction_type {config.get('prediction_type')!r}, "
                              f"use_karras_sigmas {config.get('use_karras_sigmas')!r}, timestep_type "
                              f"{config.get('timestep_type')!r}")
        self.scheduler = EulerDiscreteScheduler.from_config(config)
        self.propagation = _merge(PROPAGATION_DEFAULTS, propagation, "propagation")
        self.conditioning = _merge(CONDITIONING_DEFAULTS, conditioning, "conditioning")
        if self.conditioning["image_embedding"] not in ("zeros", "clip"):
            raise ConfigError(f"image_embedding must be 'zeros' or 'clip'; got {self.conditioning['image_embedding']!r}")
        if self.conditioning["image_embedding"] == "clip" and image_encoder is None:
            raise ConfigError("image_embedding='clip' needs the CLIP image encoder (image_encoder/ of the SVD folder)")
        if self.conditioning["negative"] not in ("zeros", "lq"):
            raise ConfigError(f"negative must be 'zeros' or 'lq'; got {self.conditioning['negative']!r}")
        embed = getattr(unet, "add_embedding", None)
        wanted = int(unet.config.addition_time_embed_dim) * 3
        if embed is not None and embed.linear_1.in_features != wanted:
            raise ConfigError(f"the UNet's added time embedding takes {embed.linear_1.in_features} values, but 3 time "
                              f"ids x addition_time_embed_dim {unet.config.addition_time_embed_dim} = {wanted}")
        self.cross_attention_dim = int(unet.config.cross_attention_dim)
        p = self.propagation
        self.control = PropagationControl(sap_stride=int(p["sap_stride"]), num_frames_kept=int(p["num_frames_kept"]))
        layers = propagation_layers(unet, int(p["first_layers"]), int(p["last_layers"]))
        self.processor_roles = install_processors(unet, self.control, layers=layers, dssag_layers=p["dssag_layers"])
        # the gamma schedule's options are checked now, not at the first guided step
        dssag_gamma(1.0, sigma_min=0.002, sigma_max=700.0, gamma_min=float(p["gamma_min"]), rho=float(p["rho"]))

    #: Upscaling factor (the condition is the LQ upsampled x4).
    scale = 4

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Where the UNet runs."""
        return self.unet.conv_in.weight.device

    # ------------------------------------------------------------------ pieces (also used by training)
    def added_time_ids(self, batch: int) -> torch.Tensor:
        """(batch, 3) float32 ``[fps - 1, motion_bucket_id, noise_aug_strength]`` (SVD's micro-conditioning)."""
        c = self.conditioning
        ids = torch.tensor([[float(c["fps"]) - 1.0, float(c["motion_bucket_id"]), float(c["noise_aug_strength"])]])
        return ids.repeat(batch, 1)

    @torch.no_grad()
    def image_embeddings(self, up: torch.Tensor) -> torch.Tensor:
        """Image tokens (b, 1, cross_attention_dim) for upsampled frames ``up`` (b, t, 3, H, W) in [0, 1]: zeros, or
        the CLIP image embedding of the middle frame (224 x 224, antialiased, CLIP-normalised)."""
        b = up.shape[0]
        if self.conditioning["image_embedding"] == "zeros":
            return torch.zeros(b, 1, self.cross_attention_dim)
        param = next(self.image_encoder.parameters())
        frame = up[:, up.shape[1] // 2].to(param.device, torch.float32)
        frame = F.interpolate(frame, size=(224, 224), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(_CLIP_MEAN, device=frame.device).view(1, 3, 1, 1)
        std = torch.tensor(_CLIP_STD, device=frame.device).view(1, 3, 1, 1)
        embeds = self.image_encoder(((frame.clamp(0, 1) - mean) / std).to(param.dtype)).image_embeds
        return rearrange(embeds.float().cpu(), "b d -> b 1 d")

    def upsample(self, lq: torch.Tensor) -> torch.Tensor:
        """``I_up``: (b, t, 3, h, w) [0, 1] -> (b, t, 3, 4h, 4w) bicubic, clamped to [0, 1]."""
        b = lq.shape[0]
        up = bicubic_skip(rearrange(lq, "b t c h w -> (b t) c h w"), self.scale).clamp(0.0, 1.0)
        return rearrange(up, "(b t) c h w -> b t c h w", b=b)

    def condition_frames(self, up: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The VAE input of the condition: ``2 up - 1 + a noise`` for upsampled frames ``up`` in [0, 1] (any layout,
        ``noise`` like it or None; ``a`` = ``noise_aug_strength``: SVD's noise augmentation)."""
        x = up * 2.0 - 1.0
        return x if noise is None else x + float(self.conditioning["noise_aug_strength"]) * noise

    def encode_condition(self, frames: torch.Tensor) -> torch.Tensor:
        """Condition latents of ``frames`` (b, n, 3, H, W) in about [-1, 1]: the VAE encoder's posterior mode, NOT
        multiplied by the scaling factor (SVD's convention for its concatenated latent); on the frames' device."""
        return diffusers_encoder(self.vae)(frames) / float(self.vae.config.scaling_factor)

    def condition_latents(self, up: torch.Tensor, noise: torch.Tensor | None = None, *, chunk: int | None = 14,
                          tile: int | None = None, tile_overlap: int = 0) -> torch.Tensor:
        """:meth:`encode_condition` of :meth:`condition_frames` over chunks and tiles: ``up`` (b, t, 3, H, W) [0, 1]
        -> CPU float32 (b, t, c, H/8, W/8)."""
        return encode_chunked(self.encode_condition, self.condition_frames(up, noise), factor=self.vae_factor,
                              chunk=chunk, tile=tile, tile_overlap=tile_overlap, device=self.device)

    def unet_prediction(self, x: torch.Tensor, timestep: torch.Tensor | float, *, cond: torch.Tensor,
                        image_embeds: torch.Tensor, added_time_ids: torch.Tensor) -> torch.Tensor:
        """The UNet's output for model input ``x`` (b, n, c, h, w) (already ``scale_model_input``-ed) and condition
        latents ``cond`` (b, n, c, h, w); ``timestep`` a scalar or (b,) (SVD: ``0.25 ln sigma``); image tokens
        (b, 1, d); time ids (b, 3). Returns (b, n, c, h, w) in the UNet's dtype (v-prediction)."""
        param = self.unet.conv_in.weight
        sample = torch.cat([x, cond.to(x)], dim=2).to(param.device, param.dtype)
        timestep = torch.as_tensor(timestep, device=param.device)
        self.control.num_frames = x.shape[1]
        return self.unet(sample, timestep, encoder_hidden_states=image_embeds.to(param.device, param.dtype),
                         added_time_ids=added_time_ids.to(param.device, param.dtype)).sample

    def guided_prediction(self, x: torch.Tensor, timestep: torch.Tensor, *, cond: torch.Tensor,
                          image_embeds: torch.Tensor, added_time_ids: torch.Tensor,
                          guidance_scale: float) -> torch.Tensor:
        """UNet output for one tile with classifier-free guidance (unconditional rows first, DSSAG on them) when
        ``guidance_scale > 1`` (float32)."""
        use_guidance = guidance_scale > 1.0
        self.control.uncond_rows = x.shape[0] if use_guidance else 0
        uncond = None
        if use_guidance:
            zeros = self.conditioning["negative"] == "zeros"
            uncond = {"cond": torch.zeros_like(cond) if zeros else cond,
                      "image_embeds": torch.zeros_like(image_embeds) if zeros else image_embeds}
        try:
            return classifier_free_guidance(self.unet_prediction, x, timestep,
                                            cond={"cond": cond, "image_embeds": image_embeds}, uncond=uncond,
                                            guidance_scale=float(guidance_scale),
                                            shared={"added_time_ids": added_time_ids})
        finally:
            self.control.uncond_rows = 0

    # ------------------------------------------------------------------ sampling
    def _latent_tile(self, tile: int | None, tile_overlap: int) -> tuple[int | None, int]:
        """LQ-pixel tiles -> latent tiles (:func:`zoo.diffusion.tiles.latent_tile`)."""
        return latent_tile(tile, tile_overlap, scale=self.scale, vae_factor=self.vae_factor)

    @staticmethod
    def check_options(*, num_inference_steps: int, guidance_scale: float, window: int | None, window_overlap: int,
                      tile: int | None, tile_overlap: int, vae_chunk: int | None, vae_tile: int | None = None,
                      vae_tile_overlap: int = 0, **switches: object) -> None:
        """Validate sampling options before any work.

        Raises:
            ConfigError: naming the option and its value.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
            raise ConfigError(f"guidance_scale must be a number; got {guidance_scale!r}")
        check_window(window, window_overlap, name="window")
        check_window(tile, tile_overlap, name="tile")
        check_window(vae_tile, vae_tile_overlap, name="vae_tile")
        if vae_chunk is not None and (isinstance(vae_chunk, bool) or not isinstance(vae_chunk, int) or vae_chunk < 1):
            raise ConfigError(f"vae_chunk must be a positive integer or None; got {vae_chunk!r}")
        for name, value in switches.items():
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false; got {value!r}")

    @torch.no_grad()
    def sample_latents(self, lq: torch.Tensor, *, num_inference_steps: int = 25, guidance_scale: float = 2.0,
                       sap: bool = True, tap: bool = True, dssag: bool = True, seed: int = 0,
                       window: int | None = 14, window_overlap: int = 7, tile: int | None = 128,
                       tile_overlap: int = 64, vae_chunk: int | None = 14, vae_tile: int | None = 128,
                       vae_tile_overlap: int = 32, progress: bool = False, first_frame: int = 0) -> torch.Tensor:
        """Steps 1-3 of the module docstring: ``lq`` (b, t, 3, h, w) [0, 1], h and w even -> the final latents
        (b, t, c, h / 2, w / 2) CPU float32 (diffusion space)."""
        b = lq.shape[0]
        generator = chunk_generator(int(seed), int(first_frame))
        device = self.device
        up = self.upsample(lq)
        latent_tile, latent_overlap = self._latent_tile(tile, tile_overlap)
        shape = (b, lq.shape[1], self.latent_channels, up.shape[-2] // self.vae_factor, up.shape[-1] // self.vae_factor)
        self.scheduler.set_timesteps(num_inference_steps)
        latents = torch.randn(shape, generator=generator) * float(self.scheduler.init_noise_sigma)
        aug = torch.randn(up.shape, generator=generator)
        vae_tile, vae_overlap = self._latent_tile(vae_tile, vae_tile_overlap)
        cond = self.condition_latents(up, aug, chunk=vae_chunk, tile=vae_tile, tile_overlap=vae_overlap)
        image_embeds = self.image_embeddings(up)
        time_ids = self.added_time_ids(b)
        del up, aug
        guided = guidance_scale > 1.0
        control = self.control
        control.reset()
        control.sap, control.tap, control.dssag = bool(sap), bool(tap), bool(dssag) and guided
        p = self.propagation
        sigma_min = float(self.scheduler.config.sigma_min)
        sigma_max = float(self.scheduler.config.sigma_max)
        clip_shape = tuple(shape[i] for i in (1, 3, 4))

        def model(x: torch.Tensor, timestep: torch.Tensor, step: Step) -> torch.Tensor:
            mode, backward = control.step_mode(step.index)
            sigma = float(self.scheduler.sigmas[self.scheduler.step_index])
            gamma = dssag_gamma(sigma, sigma_min=sigma_min, sigma_max=sigma_max, gamma_min=float(p["gamma_min"]),
                                rho=float(p["rho"])) if control.dssag else None
            control.begin_step(mode, gamma)

            def on_tile(index: tuple[int, ...], spans: tuple[tuple[int, int], ...]) -> None:
                control.begin_tile(TileState(spans=spans, shape=clip_shape, key=(index[1], index[2])))

            try:
                return predict_over_tiles(
                    lambda piece, cond: self.guided_prediction(piece, timestep, cond=cond, image_embeds=image_embeds,
                                                               added_time_ids=time_ids,
                                                               guidance_scale=float(guidance_scale)),
                    x, context={"cond": cond}, window=window, window_overlap=window_overlap, tile=latent_tile,
                    tile_overlap=latent_overlap, window_weights="gaussian", tile_weights_kind="gaussian",
                    gaussian_sigma=float(p["gaussian_sigma"]), device=device, reverse_time=backward, on_tile=on_tile,
                    exact=True)
            finally:
                control.begin_tile(None)

        try:
            return denoise(self.scheduler, latents, model, num_inference_steps=num_inference_steps,
                           progress=progress, desc="DC-VSR denoising")
        finally:
            control.reset()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, vae_chunk: int | None = 14, vae_tile: int | None = 128,
               vae_tile_overlap: int = 32, progress: bool = False) -> torch.Tensor:
        """Temporal VAE decoding ``vae_chunk`` frames at a time, in tiles of ``vae_tile`` LQ px: (b, t, c, h, w) ->
        (b, t, 3, 8h, 8w) CPU float32 in [0, 1]."""
        latent_tile, latent_overlap = self._latent_tile(vae_tile, vae_tile_overlap)
        b, t, _, h, w = latents.shape
        sr = torch.empty(b, t, 3, h * self.vae_factor, w * self.vae_factor)
        for start, end, frames in iter_decoded_chunks(diffusers_decoder(self.vae), latents, scale=self.vae_factor,
                                                      chunk=vae_chunk, tile=latent_tile, tile_overlap=latent_overlap,
                                                      device=self.device, progress=progress):
            sr[:, start:end] = frames.add(1.0).div(2.0).clamp(0.0, 1.0)
        return sr

    @torch.no_grad()
    def forward(self, lq: torch.Tensor, *, num_inference_steps: int = 25, guidance_scale: float = 2.0,
                sap: bool = True, tap: bool = True, dssag: bool = True, seed: int = 0, window: int | None = 14,
                window_overlap: int = 7, tile: int | None = 128, tile_overlap: int = 64,
                vae_chunk: int | None = 14, vae_tile: int | None = 128, vae_tile_overlap: int = 32,
                progress: bool = False, first_frame: int = 0) -> torch.Tensor:
        """Upscale a clip (``pipeline(lq, ...)``).

        Args:
            lq: (b, t, 3, h, w) float in [0, 1], any device.
            num_inference_steps: Euler steps.
            guidance_scale: classifier-free guidance weight, used when > 1 (DSSAG needs it).
            sap, tap, dssag: the switches (all False with ``tile=None, window=None``: plain SVD on whole clips).
            seed: seed of the chunk's CPU generator (with ``first_frame``).
            window, window_overlap: frames per tile and shared by temporal neighbours (None: the whole clip).
            tile, tile_overlap: UNet tile side and overlap in LQ px (None: whole frames).
            vae_chunk: frames per VAE decoder call (None: all).
            vae_tile, vae_tile_overlap: the VAE encoder's and decoder's tiles in LQ px (None: whole frames).
            progress: tqdm bars.
            first_frame: index of ``lq``'s first frame in the video (streamed chunks draw their own noise).

        Returns:
            sr: (b, t, 3, 4h, 4w) CPU float32 in [0, 1].

        Raises:
            InputError: ``lq`` not (b, t, 3, h, w) float in [0, 1].
            ConfigError: invalid options.
        """
        self.check_options(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, window=window,
                           window_overlap=window_overlap, tile=tile, tile_overlap=tile_overlap, vae_chunk=vae_chunk,
                           vae_tile=vae_tile, vae_tile_overlap=vae_tile_overlap, sap=sap, tap=tap, dssag=dssag)
        lq = sampler_input(lq)
        _, _, _, h, w = lq.shape
        padded = pad_to_multiple(lq, max(1, self.vae_factor // self.scale))
        latents = self.sample_latents(padded, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      sap=sap, tap=tap, dssag=dssag, seed=seed, window=window,
                                      window_overlap=window_overlap, tile=tile, tile_overlap=tile_overlap,
                                      vae_chunk=vae_chunk, vae_tile=vae_tile, vae_tile_overlap=vae_tile_overlap,
                                      progress=progress, first_frame=first_frame)
        sr = self.decode(latents, vae_chunk=vae_chunk, vae_tile=vae_tile, vae_tile_overlap=vae_tile_overlap,
                         progress=progress)
        return sr[..., :self.scale * h, :self.scale * w]

    def as_upscaler(self, **options: object) -> DCVSRUpscaler:
        """An ``nn.Module`` ``fn(lq) -> sr`` with fixed sampling ``options`` (fields of :class:`SamplingOptions`),
        checked here.

        Raises:
            ConfigError: unknown option names or invalid values.
        """
        known = set(SamplingOptions.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown DC-VSR sampling options {unknown}; known: {sorted(known)}")
        chosen = SamplingOptions(**options)
        self.check_options(num_inference_steps=chosen.num_inference_steps, guidance_scale=chosen.guidance_scale,
                           window=chosen.window, window_overlap=chosen.window_overlap, tile=chosen.tile,
                           tile_overlap=chosen.tile_overlap, vae_chunk=chosen.vae_chunk, vae_tile=chosen.vae_tile,
                           vae_tile_overlap=chosen.vae_tile_overlap, sap=chosen.sap,
                           tap=chosen.tap, dssag=chosen.dssag)
        return DCVSRUpscaler(self, chosen)


class DCVSRUpscaler(SamplerUpscaler):
    """:class:`~zoo.diffusion.sampler.SamplerUpscaler` of the DC-VSR pipeline: ``forward(lq (b, t, 3, h, w) [0, 1])
    -> sr (b, t, 3, 4h, 4w) [0, 1]`` (CPU float32) with fixed :class:`SamplingOptions`."""

    def __init__(self, pipeline: DCVSRPipeline, options: SamplingOptions | None = None) -> None:
        super().__init__(pipeline, options or SamplingOptions())

