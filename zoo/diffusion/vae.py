"""Chunked and tiled VAE encoding and decoding of video latents, with bounded accelerator memory.

A VAE decoder at 720p is the largest single activation of a latent-diffusion upscaler, so the zoo's samplers decode
``chunk`` frames per call (Upscale-A-Video officially decodes 3 at a time; temporal decoders such as SVD's
``AutoencoderKLTemporalDecoder`` see those frames together) and, when asked, in overlapping spatial tiles blended
with feathered weights (:mod:`zoo.diffusion.tiles`). Clip-level tensors stay on the CPU; one chunk x tile at a time
is on the accelerator.

- :func:`iter_decoded_chunks` / :func:`decode_chunked`: latents (b, t, c, h, w) -> frames (b, t, 3, f h, f w).
- :func:`encode_chunked`: frames -> latents, tiles planned on the latent grid.
- :func:`diffusers_decoder` / :func:`diffusers_encoder`: those callables for diffusers ``AutoencoderKL`` (frames
  folded into the batch) and ``AutoencoderKLTemporalDecoder`` (``decode(z, num_frames=n)``), with the
  ``scaling_factor`` of diffusion space applied.

Layouts: latents are diffusion-space (already multiplied by ``scaling_factor``), frames in the VAE's [-1, 1].
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zoo.diffusion.tiles import check_window, run_over_tiles
from zoo.errors import ConfigError, InputError

__all__ = ["decode_chunked", "diffusers_decoder", "diffusers_encoder", "encode_chunked", "iter_decoded_chunks"]

#: Lowest blending weight of a tile (keeps every pixel covered where feathering gives 0).
TILE_FLOOR = 1e-3


def _check_chunk(chunk: int | None) -> None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"VAE chunk (frames per call) must be a positive integer or None; got {chunk!r}")


def iter_decoded_chunks(
    decode: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    *,
    scale: int,
    chunk: int | None = 3,
    tile: int | None = None,
    tile_overlap: int = 0,
    context: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Decode a clip ``chunk`` frames at a time, tile by tile; yield each chunk as it is done.

    Args:
        decode: ``decode(z, **context) -> frames``: z (b, n, c, th, tw) on ``device`` -> (b, n, 3, scale th,
            scale tw).
        latents: (b, t, c, h, w) diffusion-space latents (any device; read one chunk x tile at a time).
        scale: the decoder's upscaling factor (8 for SD, 4 for the SD x4 upscaler's VAE).
        chunk: frames per call (None: all at once).
        tile, tile_overlap: square tiles in latent pixels (None: whole frames), feather-blended in pixel space.
        context: tensors (b, t, k, h, w) on the latent grid given to ``decode`` alongside (e.g. LQ frames of an
            LQ-conditioned decoder).
        device: where ``decode`` runs.
        progress: tqdm bar over chunks.

    Yields:
        ``(start, end, frames)``: frames (b, end - start, 3, scale h, scale w) CPU float32.

    Raises:
        ConfigError: bad chunk or tile options.
        InputError: latents that are not (b, t, c, h, w).
    """
    _check_chunk(chunk)
    check_window(tile, tile_overlap, name="tile")
    if latents.ndim != 5:
        raise InputError(f"latents must be (b, t, c, h, w); got {tuple(latents.shape)}")
    context = dict(context or {})
    t = latents.shape[1]
    step = chunk or t
    for start in tqdm(range(0, t, step), desc="decoding", disable=not progress, leave=False):
        end = min(t, start + step)
        pieces = {k: v[:, start:end] for k, v in context.items()}
        frames = run_over_tiles(decode, latents[:, start:end], scale=scale, tile=tile, tile_overlap=tile_overlap,
                                context=pieces, device=device, floor=TILE_FLOOR)
        yield start, end, frames


def decode_chunked(decode: Callable[..., torch.Tensor], latents: torch.Tensor, **options: object) -> torch.Tensor:
    """All chunks of :func:`iter_decoded_chunks` in one (b, t, 3, scale h, scale w) CPU float32 tensor."""
    parts = [frames for _, _, frames in iter_decoded_chunks(decode, latents, **options)]
    return torch.cat(parts, dim=1)


@torch.no_grad()
def encode_chunked(
    encode: Callable[..., torch.Tensor],
    frames: torch.Tensor,
    *,
    factor: int,
    chunk: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Encode a clip chunk by chunk and tile by tile.

    Args:
        encode: ``encode(x) -> z``: x (b, n, 3, f th, f tw) on ``device`` -> (b, n, c, th, tw).
        frames: (b, t, 3, H, W), H and W multiples of ``factor``.
        factor: the encoder's downsampling factor.
        chunk: frames per call (None: all).
        tile, tile_overlap: square tiles in LATENT pixels (None: whole frames), feather-blended on the latent grid.
        device: where ``encode`` runs.

    Returns:
        (b, t, c, H / factor, W / factor) CPU float32.

    Raises:
        ConfigError: bad options; InputError: a frame size that is not a multiple of ``factor``.
    """
    _check_chunk(chunk)
    check_window(tile, tile_overlap, name="tile")
    if frames.ndim != 5 or frames.shape[-1] % factor or frames.shape[-2] % factor:
        raise InputError(f"frames must be (b, t, 3, H, W) with H, W multiples of {factor}; got {tuple(frames.shape)}")
    t = frames.shape[1]
    step = chunk or t
    parts = [run_over_tiles(encode, frames[:, s:s + step], scale=1, factor=factor, tile=tile, tile_overlap=tile_overlap,
                            device=device, floor=TILE_FLOOR) for s in range(0, t, step)]
    return torch.cat(parts, dim=1)


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """VAEs run in their own dtype (fp32 for stability) even inside an autocast region."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def diffusers_decoder(vae: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``decode(z (b, n, c, h, w) diffusion space) -> frames (b, n, 3, f h, f w)`` for a diffusers VAE.

    ``AutoencoderKL``: frames folded into the batch. ``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion): the
    decoder gets ``num_frames=n`` and mixes them. Latents are divided by ``vae.config.scaling_factor`` first; the VAE
    runs in its own dtype outside autocast.
    """
    scaling = float(vae.config.scaling_factor)
    temporal = "num_frames" in _decode_parameters(vae)

    def decode(z: torch.Tensor) -> torch.Tensor:
        b, n = z.shape[:2]
        param = next(vae.parameters())
        folded = rearrange(z / scaling, "b n c h w -> (b n) c h w").to(param.device, param.dtype)
        with _no_autocast(param.device):
            out = vae.decode(folded, num_frames=n).sample if temporal else vae.decode(folded).sample
        return rearrange(out.float(), "(b n) c h w -> b n c h w", b=b)

    return decode


def diffusers_encoder(vae: nn.Module, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``encode(x (b, n, 3, H, W) in [-1, 1]) -> z (b, n, c, H/f, W/f)`` in diffusion space for a diffusers VAE.

    Args:
        vae: ``AutoencoderKL`` or ``AutoencoderKLTemporalDecoder`` (both encode frame by frame).
        sample: a posterior sample instead of its mean (mode).
        generator: for the posterior sample.
    """
    scaling = float(vae.config.scaling_factor)

    def encode(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        param = next(vae.parameters())
        with _no_autocast(param.device):
            dist = vae.encode(rearrange(x, "b n c h w -> (b n) c h w").to(param.device, param.dtype)).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        return rearrange(z.float() * scaling, "(b n) c h w -> b n c h w", b=b)

    return encode


def _decode_parameters(vae: nn.Module) -> tuple[str, ...]:
    import inspect

    # the class's method: an instance attribute wrapping decode (a timing hook) must not hide num_frames
    return tuple(inspect.signature(type(vae).decode).parameters)
