"""Upscale-A-Video's entry in the family table (:data:`SPEC`): loader, weight forms, sampling options, variants.

Cheap to import (no torch, no diffusers): the loader imports the family's modules when it is called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import WeightFile
from zoo.errors import ConfigError
from zoo.family import Chunking, CpuHint, FamilySpec, SamplingOption

__all__ = ["FILES", "RELEASED", "SAMPLING_OPTIONS", "SD_X4_UPSCALER", "SPEC", "VARIANTS", "load", "parse_propagation_steps"]

#: The released folder (a Google Drive folder: a manual download) and the diffusers prior it is built on.
RELEASED = WeightFile(
    name="upscale_a_video", kind="manual", filename="upscale_a_video", folder=True,
    source="https://drive.google.com/drive/folders/1O8pbeR1hsRlFUU8O4EULe-lOKNGEWZl1 "
           "(sczhou/Upscale-A-Video README, 'Download Models')",
    license="NTU S-Lab License 1.0 (non-commercial)", used_by="upscale_a_video",
    required=("unet/unet_video.bin", "propagator/raft-things.pth"),
    note="download the whole Google Drive folder (low_res_scheduler/, propagator/, scheduler/, text_encoder/, "
         "tokenizer/, unet/, vae/) into this folder; then --weights PATH",
)
SD_X4_UPSCALER = WeightFile(
    name="sd_x4_upscaler", kind="hf_folder", filename="stable-diffusion-x4-upscaler",
    repo_id="stabilityai/stable-diffusion-x4-upscaler",
    source="https://huggingface.co/stabilityai/stable-diffusion-x4-upscaler",
    license="CreativeML Open RAIL++-M", used_by="upscale_a_video (prior; model.init_args.pretrained)",
    required=("model_index.json", "unet/diffusion_pytorch_model.safetensors",
              "vae/diffusion_pytorch_model.safetensors"),
)
FILES = (RELEASED, SD_X4_UPSCALER)

#: Named configurations. ``tiny``: UNet levels of 32/32/64 channels with one block each, one attention head and
#: 32-d text tokens; VAE of three 32-channel levels (x4, like the released one); a one-layer 32-d CLIP text encoder
#: (``transformers.CLIPTextConfig`` options; random networks have no tokenizer, so :func:`load` builds none and
#: tests that need text build it from these options). For CPU smoke runs and tests; the quality is meaningless.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": dict(block_out_channels=(32, 32, 64), layers_per_block=1,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                     only_cross_attention=(True, True, False), attention_head_dim=1, cross_attention_dim=32),
        "vae": dict(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=32),
        "text_encoder": dict(vocab_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=77),
    },
}


def parse_propagation_steps(value: object) -> tuple[int, ...]:
    """``propagation_steps`` from a comma list ``'24,26,28'``, one integer or a sequence of integers.

    Returns:
        The step indices as a tuple of ints (``()`` for None or an empty string).

    Raises:
        ConfigError: an item that is not an integer (the whole value is named).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    steps = []
    for item in items:
        try:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)) or int(item) != float(item):
                raise ValueError
            steps.append(int(item))
        except (TypeError, ValueError):
            raise ConfigError(f"propagation_steps must be integers (e.g. 24,26,28); got {value!r}") from None
    return tuple(steps)


#: ``vsrzoo upscale`` flags (official defaults, ``inference_upscale_a_video.py``; colour fix: the paper's wavelet).
SAMPLING_OPTIONS = (
    SamplingOption("noise_level", int, 120, "noise added to the LQ input, 0..350; higher = more generated detail, "
                   "less fidelity"),
    SamplingOption("guidance_scale", float, 6.0, "classifier-free guidance weight, used when > 1"),
    SamplingOption("num_inference_steps", int, 30, "DDIM denoising steps", flag="steps"),
    SamplingOption("prompt", str, "best quality, extremely detailed", "text prompt"),
    SamplingOption("negative_prompt", str, "blur, worst quality", "negative prompt (unconditional branch)"),
    SamplingOption("propagation_steps", tuple, (), "0-based denoising steps after which latents are propagated "
                   "along RAFT flows, e.g. 24,26,28 (needs the RAFT weights and LQ frames of at least 128 px)",
                   parse=parse_propagation_steps),
    SamplingOption("color_fix", str, "wavelet", "colour correction against the LQ input",
                   choices=("none", "wavelet", "adain")),
    SamplingOption("seed", int, 0, "seed of the sampler's noise (each streamed chunk derives its own from it)"),
)

#: Sampling options the loader accepts besides the flags (fields of ``sampling.SamplingOptions``).
_MORE_SAMPLING = ("window", "window_overlap", "window_blend", "tile", "tile_overlap", "vae_chunk", "progress")


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """The Upscale-A-Video sampler as an upscaler module (``fn(lq) -> sr``, ``scale`` 4, ``takes_first_frame``).

    Args:
        path: the released folder, a diffusers SD x4 upscaler folder, a vsrzoo ``.ckpt``
            (:func:`~zoo.models.upscale_a_video.load.load_upscale_a_video_pipeline`), or None for random networks
            (loud warning).
        variant: random networks only: a name of :data:`VARIANTS` for their sizes (``unet`` / ``vae`` overrides
            win).
        **overrides: sampling options (:data:`SAMPLING_OPTIONS` and ``window``, ``window_overlap``,
            ``window_blend``, ``tile``, ``tile_overlap``, ``vae_chunk``, ``progress``) and loader options.

    Raises:
        ConfigError: unknown names or values, a variant with weights.
        WeightsError: unusable weights.
    """
    from zoo.models.upscale_a_video.load import load_upscale_a_video_pipeline, upscaler_from_pipeline

    sampling = SPEC.split_sampling(overrides, _MORE_SAMPLING)
    SPEC.check_variant(variant, path)
    if variant is not None:
        sizes = SPEC.variant(variant)
        overrides.setdefault("unet", sizes["unet"])
        overrides.setdefault("vae", sizes["vae"])
    pipeline = load_upscale_a_video_pipeline(path, **overrides)
    return upscaler_from_pipeline(pipeline, **sampling)


SPEC = FamilySpec(
    name="upscale_a_video",
    kind="diffusion",
    paper="Zhou et al., Upscale-A-Video: Temporal-Consistent Diffusion Model for Real-World Video Super-Resolution, "
          "CVPR 2024",
    load=load,
    weight_forms=(
        "the released Upscale-A-Video folder (unet/unet_video.bin, vae/, propagator/, scheduler/, text_encoder/, "
        "tokenizer/)",
        "a local diffusers stabilityai/stable-diffusion-x4-upscaler folder (the prior; temporal layers untrained)",
        "a vsrzoo .ckpt of UpscaleAVideo / UpscaleAVideoVAEFinetune",
    ),
    # the sampler windows (8 frames, 2 shared) and tiles (256 LQ px, 64 shared) itself; the video is streamed in
    # chunks of 24 frames (4 cross-faded) so that memory does not grow with its length
    chunking=Chunking(chunk_frames=24, overlap=4, tile=256, tile_overlap=64, tiles_in_sampler=True),
    sampling_options=SAMPLING_OPTIONS,
    variants=VARIANTS,
    readme="models/upscale_a_video/README.md",
    files=FILES,
    # a user's fast_dev_run of zoo/upscale_a_video.yaml on this project's 2-core CPU (746 M parameters), recorded
    # in benchmarks/results/train_step_cpu.md
    cpu_hint=CpuHint(override="configs/upscale_a_video/tiny_cpu.yaml", step_seconds=169.0, peak_rss_gb=12.2,
                     measured="a user's fast_dev_run on a 2-core CPU, benchmarks/results/train_step_cpu.md"),
)
