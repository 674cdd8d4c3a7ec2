"""VideoGigaGAN's entry in the family table (:data:`SPEC`). Cheap to import: the loader imports the net when called."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.family import Chunking, CpuHint, FamilySpec, load_or_build

__all__ = ["SPEC", "VARIANTS", "load"]

#: Named configurations of :class:`~zoo.models.videogigagan.net.VideoGigaGANNet` (``net``) and
#: :class:`~zoo.layers.discriminators.VideoDiscriminator` (``discriminator``). ``tiny``: two levels of 8 base
#: channels (57,891 trainable generator parameters plus the frozen SPyNet; a 10,985-parameter discriminator), for
#: CPU tests and smoke runs.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "net": dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, style_dim=16, attn_levels=(1,),
                    hr_channels=None, num_heads=2, propagation_channels=8, num_propagation_blocks=1),
        "discriminator": dict(base_channels=8, channel_mults=(1, 2, 2)),
    },
}


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """:class:`~zoo.models.videogigagan.net.VideoGigaGANNet` from weights, or random (a variant's sizes, loud warning).

    Args:
        path: see :func:`~zoo.models.videogigagan.convert.load_videogigagan`; None: random weights.
        variant: random weights only: a name of :data:`VARIANTS`.
        **overrides: constructor arguments of the net and ``use_ema``.

    Raises:
        ConfigError / WeightsError: as the loader.
    """
    from zoo.models.videogigagan.convert import load_videogigagan
    from zoo.models.videogigagan.net import VideoGigaGANNet

    return load_or_build(SPEC, path, variant, overrides, load_weights=load_videogigagan, build=VideoGigaGANNet)


SPEC = FamilySpec(
    name="videogigagan",
    kind="regression",
    paper="Xu et al., VideoGigaGAN: Towards Detail-rich Video Super-Resolution, ECCV 2024",
    load=load,
    weight_forms=(
        "a vsrzoo .ckpt of zoo.models.videogigagan.system.VideoGigaGAN (no official release exists)",
        "a VideoGigaGANNet state_dict file",
    ),
    chunking=Chunking(chunk_frames=30, overlap=4, tile=None, tile_overlap=32),
    variants=VARIANTS,
    readme="models/videogigagan/README.md",
    # `python benchmarks/train_step_cpu.py videogigagan --model.init_args.lpips_weight=0`: the first step of
    # zoo/videogigagan.yaml (batch 4 x 10 frames of 256 px GT, 62.5 M parameters) was OOM-killed at 25.0 GB RSS;
    # configs/videogigagan/cpu_small.yaml has about 4 M
    cpu_hint=CpuHint(override="configs/videogigagan/cpu_small.yaml", step_seconds=None, peak_rss_gb=25.0,
                     finished=False, measured="benchmarks/results/train_step_cpu.md", min_params=10_000_000),
)
