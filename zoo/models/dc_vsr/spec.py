"""DC-VSR's entry in the family table (:data:`SPEC`): loader, weight forms, sampling options, variants.

Cheap to import (no torch, no diffusers): the loader imports the family's modules when it is called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import WeightFile
from zoo.errors import ConfigError
from zoo.family import Chunking, CpuHint, FamilySpec, SamplingOption

__all__ = ["FILES", "SAMPLING_OPTIONS", "SPEC", "SVD_IMG2VID", "UNET_EMA", "VARIANTS", "load", "parse_switch"]

#: The authors' UNet EMA (a manual download: the project page links the release; no repository id of it could be
#: confirmed here) and the SVD folder whose VAE and scheduler it runs with.
UNET_EMA = WeightFile(
    name="dc_vsr_unet_ema", kind="manual", filename="dc-vsr", folder=True,
    source="https://daramgc.github.io/docs/Publications/dc-vsr (the authors' project page links the release)",
    license="unknown (not stated)", used_by="dc_vsr", required=("unet_ema/config.json|config.json",),
    note="put the released unet_ema/ folder here; --weights PATH --option svd=<the svd_img2vid folder>",
)
SVD_IMG2VID = WeightFile(
    name="svd_img2vid", kind="hf_folder", filename="stable-video-diffusion-img2vid",
    repo_id="stabilityai/stable-video-diffusion-img2vid",
    source="https://huggingface.co/stabilityai/stable-video-diffusion-img2vid",
    license="Stability AI's SVD license (see the model card)", used_by="dc_vsr (--option svd=, pretrained)",
    gated=True, required=("model_index.json", "vae/diffusion_pytorch_model.safetensors",
                          "scheduler/scheduler_config.json"),
    note="gated: accept the conditions on the model page and log in (`hf auth login` or HF_TOKEN) first",
)
FILES = (UNET_EMA, SVD_IMG2VID)

#: Named configurations. ``tiny``: a 2-level UNetSpatioTemporalConditionModel of 32/64 channels (one block per level,
#: 2/4 heads, 32-d image tokens, 8-d time-id embeddings) and an 8x AutoencoderKLTemporalDecoder of four 32-channel
#: levels (SVD's factor). For CPU smoke runs and tests; the quality is meaningless.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": dict(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, num_frames=4,
                     down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                     up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
                     num_attention_heads=(2, 4), cross_attention_dim=32, addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=24),
        "vae": dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1, sample_size=64),
    },
}

_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def parse_switch(value: object) -> bool:
    """A switch from the command line: ``on``/``off``, ``true``/``false``, ``yes``/``no``, ``1``/``0``, or a bool.

    Raises:
        ConfigError: anything else (the value is named).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"a switch must be on/off (true/false, yes/no, 1/0); got {value!r}")


#: ``vsrzoo upscale`` flags (the paper gives no step count or guidance weight: ours, see the family README).
SAMPLING_OPTIONS = (
    SamplingOption("num_inference_steps", int, 25, "Euler (EDM) steps", flag="steps"),
    SamplingOption("guidance_scale", float, 2.0, "classifier-free guidance weight, used when > 1 (DSSAG needs it)"),
    SamplingOption("sap", bool, True, "DC-VSR: spatial attention propagation across tiles (on/off)",
                   parse=parse_switch),
    SamplingOption("tap", bool, True, "DC-VSR: temporal attention propagation across tiles (on/off)",
                   parse=parse_switch),
    SamplingOption("dssag", bool, True, "DC-VSR: detail-suppression self-attention guidance (on/off)",
                   parse=parse_switch),
    SamplingOption("seed", int, 0, "seed of the sampler's noise (each streamed chunk derives its own from it)"),
)

#: Sampling options the loader accepts besides the flags (fields of ``sampling.SamplingOptions``).
_MORE_SAMPLING = ("window", "window_overlap", "tile", "tile_overlap", "vae_chunk", "vae_tile", "vae_tile_overlap",
                  "progress")


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """The DC-VSR pipeline as an upscaler module (``fn(lq) -> sr``, ``scale`` 4, ``takes_first_frame``).

    Args:
        path: the released ``unet_ema`` folder (with the ``svd`` option), a local Stable Video Diffusion img2vid
            folder, a vsrzoo ``.ckpt``, or None for random networks (loud warning).
        variant: random networks only: a name of :data:`VARIANTS`.
        **overrides: sampling options (:data:`SAMPLING_OPTIONS` and ``window``, ``window_overlap``, ``tile``,
            ``tile_overlap``, ``vae_chunk``, ``vae_tile``, ``vae_tile_overlap``, ``progress``) and loader options (``svd``, ``propagation``,
            ``conditioning``; :func:`zoo.models.dc_vsr.load.load_dcvsr_pipeline`).

    Raises:
        ConfigError: unknown names or values, a variant with weights.
        WeightsError: unusable weights.
    """
    from zoo.models.dc_vsr.load import load_dcvsr_pipeline, upscaler_from_pipeline

    sampling = SPEC.split_sampling(overrides, _MORE_SAMPLING)
    for name in ("sap", "tap", "dssag"):
        if name in sampling:
            sampling[name] = parse_switch(sampling[name])
    SPEC.check_variant(variant, path)
    if variant is not None:
        overrides["variant"] = variant
    svd = overrides.get("svd")
    if svd is not None and not isinstance(svd, (str, Path)):
        raise ConfigError(f"svd must be a folder path; got {svd!r}")
    pipeline = load_dcvsr_pipeline(path, **overrides)
    return upscaler_from_pipeline(pipeline, **sampling)


SPEC = FamilySpec(
    name="dc_vsr",
    kind="diffusion",
    paper="Han et al., DC-VSR: Spatially and Temporally Consistent Video Super-Resolution with Video Diffusion Prior, "
          "arXiv 2502.03502, 2025",
    load=load,
    weight_forms=(
        "the released DC-VSR UNet folder unet_ema/ (config.json + diffusion_pytorch_model.safetensors) with "
        "--option svd=DIR, a local stable-video-diffusion-img2vid folder for the VAE and scheduler",
        "a local stable-video-diffusion-img2vid folder (unet/, vae/, scheduler/; UNet not fine-tuned)",
        "a vsrzoo .ckpt of DC-VSR (it names its SVD folder; --option svd=DIR points elsewhere)",
    ),
    # the sampler tiles itself (14 frames x 128 LQ px = the paper's 64 x 64 x 14 latents, 50% overlap); videos are
    # streamed in chunks of 42 frames (5 temporal tiles, 7 frames cross-faded) so that memory does not grow with length
    chunking=Chunking(chunk_frames=42, overlap=7, tile=128, tile_overlap=64, tiles_in_sampler=True),
    sampling_options=SAMPLING_OPTIONS,
    variants=VARIANTS,
    readme="models/dc_vsr/README.md",
    files=FILES,
    # `python benchmarks/train_step_cpu.py dc_vsr --stateless-optimizer`: one step of zoo/dc_vsr.yaml (14 frames of
    # 512 px GT, 1.62 G parameters, 1.52 G trained) ran 19+ min and was stopped at 22.0 GB RSS (memory exhausted)
    cpu_hint=CpuHint(override="configs/dc_vsr/tiny_cpu.yaml", step_seconds=1140.0, peak_rss_gb=22.0, finished=False,
                     measured="benchmarks/results/train_step_cpu.md",
                     note="forward + backward only, the machine's 23.5 GiB of memory ran out"),
)
