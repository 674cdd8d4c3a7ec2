"""RealBasicVSR's entry in the family table (:data:`SPEC`). Cheap to import: the loader imports the net when called."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import WeightFile
from zoo.family import Chunking, FamilySpec, load_or_build

__all__ = ["FILES", "SPEC", "VARIANTS", "load"]

#: The released weights: the authors host them on Dropbox / Google Drive / OneDrive only (no direct link), so the
#: catalogue prints where to get the file and where to put it.
FILES = (
    WeightFile(
        name="realbasicvsr_x4", kind="manual", filename="RealBasicVSR_x4.pth",
        source="https://github.com/ckkelvinchan/RealBasicVSR#inference",
        license="Apache-2.0 (ckkelvinchan/RealBasicVSR)", used_by="realbasicvsr",
        note="download RealBasicVSR.pth from the README's Dropbox link "
             "(https://www.dropbox.com/s/eufigxmmkv5woop/RealBasicVSR.pth?dl=0) or its Google Drive / OneDrive "
             "mirrors and save it under this name; then --weights PATH"),
)

#: Named configurations of :class:`~zoo.models.realbasicvsr.net.RealBasicVSRNet` (``net``) and of the GAN stage's
#: :class:`~zoo.layers.discriminators.UNetDiscriminatorSN` (``discriminator``). ``tiny``: 8 channels, one residual
#: block per stack, for CPU tests and smoke runs.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "net": dict(mid_channels=8, num_propagation_blocks=1, num_cleaning_blocks=1),
        "discriminator": dict(mid_channels=8),
    },
}


def load(path: str | Path | None, *, variant: str | None = None, **overrides: Any) -> Any:
    """:class:`~zoo.models.realbasicvsr.net.RealBasicVSRNet` from weights, or random (a variant's sizes, loud warning).

    Args:
        path: see :func:`~zoo.models.realbasicvsr.convert.load_realbasicvsr`; None: random weights.
        variant: random weights only: a name of :data:`VARIANTS`.
        **overrides: constructor arguments of the net (``dynamic_refine_thres``, ...) and ``use_ema``.

    Raises:
        ConfigError / WeightsError: as the loader.
    """
    from zoo.models.realbasicvsr.convert import load_realbasicvsr
    from zoo.models.realbasicvsr.net import RealBasicVSRNet

    return load_or_build(SPEC, path, variant, overrides, load_weights=load_realbasicvsr, build=RealBasicVSRNet)


SPEC = FamilySpec(
    name="realbasicvsr",
    kind="regression",
    paper="Chan et al., Investigating Tradeoffs in Real-World Video Super-Resolution, CVPR 2022",
    load=load,
    weight_forms=(
        "the official mmediting RealBasicVSR_x4.pth",
        "a vsrzoo .ckpt of zoo.models.realbasicvsr.system.RealBasicVSR",
        "a RealBasicVSRNet state_dict file",
    ),
    chunking=Chunking(chunk_frames=30, overlap=4, tile=None, tile_overlap=32),
    variants=VARIANTS,
    readme="models/realbasicvsr/README.md",
    files=FILES,
)
