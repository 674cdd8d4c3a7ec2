"""SATeCo's entry in the family table (:data:`SPEC`): loader, weight forms, sampling options, variants.

Cheap to import (no torch, no diffusers): the loader imports the family's modules when it is called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import WeightFile
from zoo.family import Chunking, CpuHint, FamilySpec, SamplingOption

__all__ = ["FILES", "SAMPLING_OPTIONS", "SD21_BASE", "SPEC", "VARIANTS", "load"]

#: SATeCo has no released weights; it trains on a frozen Stable Diffusion 2.1-base.
SD21_BASE = WeightFile(
    name="sd21_base", kind="hf_folder", filename="stable-diffusion-2-1-base",
    repo_id="stabilityai/stable-diffusion-2-1-base",
    source="https://huggingface.co/stabilityai/stable-diffusion-2-1-base",
    license="CreativeML Open RAIL++-M", used_by="sateco (model.init_args.pretrained)",
    required=("model_index.json", "unet/diffusion_pytorch_model.safetensors",
              "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"),
)
FILES = (SD21_BASE,)

#: Named configurations. ``tiny``: a 3-level UNet of 32/32/64 channels (one block per level, 32-d text tokens), an
#: 8x VAE of four 32-channel levels (like SD's factor), and small SATeCo modules (16-channel upscaler with 2 TMSA
#: blocks of 2 heads, latent encoder 16/32, 16-d attention heads, 8-channel refiner). For CPU smoke runs and tests; the
#: quality is meaningless. ``text_encoder`` sizes the CLIP text encoder of test folders (random networks have none).
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": dict(sample_size=8, block_out_channels=(32, 32, 64), layers_per_block=1,
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                     attention_head_dim=2, cross_attention_dim=32),
        "vae": dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1, sample_size=64),
        "text_encoder": dict(vocab_size=64, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=77),
        "upscaler": dict(channels=16, num_blocks=2, num_heads=2),
        "latent_encoder": dict(channels=(16, 32), num_blocks=1),
        "adapters": dict(head_dim=16),
        "refiner": dict(channels=8, num_blocks=1),
    },
}

#: ``vsrzoo upscale`` flags (the paper gives none of these; our defaults, see the family README).
SAMPLING_OPTIONS = (
    SamplingOption("num_inference_steps", int, 50, "DDIM steps of the full schedule", flag="steps"),
    SamplingOption("strength", float, 0.5, "SATeCo: how strongly the upscaler's latent is noised before denoising, "
                   "in (0, 1]; the fraction of the steps that run"),
    SamplingOption("guidance_scale", float, 1.0, "classifier-free guidance weight, used when > 1"),
    SamplingOption("prompt", str, "", "text prompt"),
    SamplingOption("negative_prompt", str, "", "negative prompt (unconditional branch)"),
    SamplingOption("seed", int, 0, "seed of the sampler's noise (each streamed chunk derives its own from it)"),
)

#: Sampling options the loader accepts besides the flags (fields of ``sampling.SamplingOptions``).
_MORE_SAMPLING = ("window", "window_overlap", "tile", "tile_overlap", "vae_chunk", "progress")


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """The SATeCo pipeline as an upscaler module (``fn(lq) -> sr``, ``scale`` 4, ``takes_first_frame``).

    Args:
        path: a vsrzoo ``.ckpt`` of any SATeCo stage, a local Stable Diffusion 2.x-base folder (untrained SATeCo
            modules, warned), or None for random networks (loud warning).
        variant: random networks only: a name of :data:`VARIANTS`.
        **overrides: sampling options (:data:`SAMPLING_OPTIONS` and ``window``, ``window_overlap``, ``tile``,
            ``tile_overlap``, ``vae_chunk``, ``progress``) and loader options (``pretrained``, ``refiner_weight``;
            :func:`zoo.models.sateco.load.load_sateco_pipeline`).

    Raises:
        ConfigError: unknown names or values, a variant with weights.
        WeightsError: unusable weights.
    """
    from zoo.models.sateco.load import load_sateco_pipeline, upscaler_from_pipeline

    sampling = SPEC.split_sampling(overrides, _MORE_SAMPLING)
    SPEC.check_variant(variant, path)
    if variant is not None:
        overrides["variant"] = variant
    return upscaler_from_pipeline(load_sateco_pipeline(path, **overrides), **sampling)


SPEC = FamilySpec(
    name="sateco",
    kind="diffusion",
    paper="Chen et al., Learning Spatial Adaptation and Temporal Coherence in Diffusion Models for Video "
          "Super-Resolution (SATeCo), CVPR 2024",
    load=load,
    weight_forms=(
        "a vsrzoo .ckpt of SATeCo (any training stage; it names its local stable-diffusion-2-1-base folder, "
        "--option pretrained=DIR points elsewhere)",
        "a local diffusers stable-diffusion-2-1-base folder (unet/, vae/, scheduler/, text_encoder/, tokenizer/; "
        "SATeCo modules untrained)",
    ),
    # the sampler windows (6 frames, 2 shared) and tiles (128 LQ px = 512 output px, 32 shared) itself; videos are
    # streamed in chunks of 24 frames (4 cross-faded) so that memory does not grow with their length
    chunking=Chunking(chunk_frames=24, overlap=4, tile=128, tile_overlap=32, tiles_in_sampler=True),
    sampling_options=SAMPLING_OPTIONS,
    variants=VARIANTS,
    readme="models/sateco/README.md",
    files=FILES,
    # `OMP_NUM_THREADS=2 python benchmarks/train_step_cpu.py sateco`: one step of zoo/sateco.yaml (stage 2, 6 frames
    # of 256 px GT, 1004.7 M parameters of which 40.9 M train)
    cpu_hint=CpuHint(override="configs/sateco/tiny_cpu.yaml", step_seconds=93.8, peak_rss_gb=6.9,
                     measured="benchmarks/results/train_step_cpu.md"),
)
