"""The family table: one line per model family, each the :class:`~zoo.family.FamilySpec` its folder declares.

Everything that needs to know the families reads this table: :func:`load_pretrained`, :func:`available_families`,
``vsrzoo upscale`` (its ``--model`` choices, its sampling flags, chunking defaults), ``vsrzoo models``, the
benchmark entries, the notebook and the weights catalogue (:func:`weight_files`, ``vsrzoo weights``). Adding a family is its folder ``zoo/models/<family>/`` (with a ``spec.py``)
plus one line below. The specs import nothing heavy; a family's modules are imported when it is loaded.

Only local files are read; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.catalogue import SHARED_FILES, WeightFile
from zoo.errors import ConfigError, WeightsError
from zoo.family import FamilySpec
from zoo.models.dc_vsr.spec import SPEC as DC_VSR
from zoo.models.realbasicvsr.spec import SPEC as REALBASICVSR
from zoo.models.realesrgan.spec import SPEC as REALESRGAN
from zoo.models.sateco.spec import SPEC as SATECO
from zoo.models.upscale_a_video.spec import SPEC as UPSCALE_A_VIDEO
from zoo.models.videogigagan.spec import SPEC as VIDEOGIGAGAN

__all__ = ["FAMILIES", "available_families", "diffusion_families", "family", "families_table", "load_pretrained",
           "weight_files"]

#: family name -> spec, in the order of the mission (regression families, then diffusion families).
FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    REALBASICVSR,
    VIDEOGIGAGAN,
    UPSCALE_A_VIDEO,
    SATECO,
    DC_VSR,
    REALESRGAN,
)}


def available_families() -> list[str]:
    """Names accepted by :func:`load_pretrained`, sorted."""
    return sorted(FAMILIES)


def diffusion_families() -> list[str]:
    """Names of the families whose upscaler is a diffusion sampler, sorted."""
    return sorted(name for name, spec in FAMILIES.items() if spec.kind == "diffusion")


def family(name: str) -> FamilySpec:
    """The spec of family ``name``.

    Raises:
        ConfigError: unknown family (the known ones are listed).
    """
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}; available: {available_families()}")
    return FAMILIES[name]


def load_pretrained(family_name: str, path: str | Path | None, *, variant: str | None = None,
                    **overrides: Any) -> Any:
    """Build a family's upscaler from local weights (a file or a folder), in eval mode on the CPU.

    Args:
        family_name: one of :func:`available_families` (``'realbasicvsr'``, ``'upscale_a_video'``,
            ``'videogigagan'``).
        path: the family's weights (``zoo.hub.family(name).weight_forms`` lists what each accepts); None builds
            RANDOM weights (with a loud warning: for smoke runs and timing, the output is meaningless), full size
            or of the named ``variant``.
        variant: random weights only: a named configuration of the family (``family(name).variants``, e.g.
            ``'tiny'``).
        **overrides: the family's loader options (e.g. ``dynamic_refine_thres=5`` for RealBasicVSR; the sampling
            options ``noise_level``, ``guidance_scale``, ``num_inference_steps``, ... for diffusion families).

    Returns:
        The upscaler (``nn.Module``, ``forward(lq (b, t, 3, h, w) float [0, 1]) -> (b, t, 3, scale h, scale w)``)
        in eval mode on the CPU, with a ``scale`` attribute for the diffusion families.

    Raises:
        ConfigError: unknown family, variant or override name; a variant together with weights.
        WeightsError: missing path (named in the message), a file or folder of the wrong kind or family, or
            weights that do not match the architecture.

    Note:
        Files holding pickled Python objects are loaded with ``weights_only=False`` (see
        :func:`zoo.weights.read_checkpoint`); only load files you trust.
    """
    spec = family(family_name)
    if path is not None and str(path) in spec.weight_names and not Path(path).exists():
        return spec.load(str(path), variant=variant, **overrides)
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise WeightsError(f"{family_name} weights not found: {path} (accepted: {spec.accepted_weights()})"
                               f"{spec.download_hint()}")
    return spec.load(path, variant=variant, **overrides)


def families_table() -> str:
    """The table ``vsrzoo models`` prints: family, kind, variants, weight forms, paper (markdown)."""
    rows = ["| family | kind | variants | weights it loads | paper |", "|---|---|---|---|---|"]
    for spec in FAMILIES.values():
        variants = ", ".join(sorted(spec.variants)) or "-"
        rows.append(f"| {spec.name} | {spec.kind} | {variants} | {'; '.join(spec.weight_forms)} | {spec.paper} |")
    return "\n".join(rows)


def weight_files() -> dict[str, WeightFile]:
    """The weights catalogue: the shared files (:data:`zoo.catalogue.SHARED_FILES`), then each family's ``files``.

    Raises:
        ConfigError: two entries with one name.
    """
    catalogue: dict[str, WeightFile] = {}
    for entry in (*SHARED_FILES, *(entry for spec in FAMILIES.values() for entry in spec.files)):
        if entry.name in catalogue:
            raise ConfigError(f"two weight files are named {entry.name!r}")
        catalogue[entry.name] = entry
    return catalogue

