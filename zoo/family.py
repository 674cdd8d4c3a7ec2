"""What a model family declares about itself: :class:`FamilySpec`, read by the family table in :mod:`zoo.hub`.

Each ``zoo/models/<family>/spec.py`` builds one :class:`FamilySpec` and ``zoo/hub.py`` lists them, one line per
family. Everything outside a family's folder that needs to know about the family (``zoo.load_pretrained``,
``vsrzoo upscale`` and its flags, ``vsrzoo models``, ``vsrzoo benchmark`` entries, the notebook) reads the spec,
so adding a family is its folder plus that one line.

This module is a leaf: plain frozen dataclasses (the weight files from :mod:`zoo.catalogue`), no torch import, so
the table is cheap to read.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zoo.catalogue import WeightFile
from zoo.errors import ConfigError

__all__ = ["Chunking", "CpuHint", "FamilySpec", "SamplingOption", "format_duration", "load_or_build"]


@dataclass(frozen=True)
class Chunking:
    """Default temporal chunking and spatial tiling of ``vsrzoo upscale`` for a family.

    Attributes:
        chunk_frames: frames per streamed chunk (memory stays bounded for any video length); None: whole video.
        overlap: frames shared (cross-faded) by consecutive chunks.
        tile: LQ tile side in pixels (None: whole frames).
        tile_overlap: LQ pixels shared by neighbouring tiles.
        tiles_in_sampler: True for upscalers that tile themselves (diffusion samplers their latents, Real-ESRGAN
            the ncnn tool's way): ``--tile`` and ``--tile-overlap`` are then handed to the loader as the ``tile`` /
            ``tile_overlap`` options instead of :func:`zoo.inference.upscale_video` tiling the frames.
    """

    chunk_frames: int | None = 30
    overlap: int = 4
    tile: int | None = None
    tile_overlap: int = 32
    tiles_in_sampler: bool = False


@dataclass(frozen=True)
class SamplingOption:
    """One sampling option of a diffusion family, from which ``vsrzoo upscale`` builds its flag.

    Attributes:
        name: the loader's keyword (e.g. ``'num_inference_steps'``).
        type: ``int``, ``float``, ``str`` or ``bool``; ``parse`` (if given) turns the flag's text into the value.
        default: the family's default (shown in ``--help``; the loader applies it when the flag is absent).
        help: one line for ``--help``.
        flag: the command-line flag without dashes, underscores allowed (default: ``name``); ``'steps'`` ->
            ``--steps``.
        choices: allowed values, if a closed set.
        parse: text -> value (e.g. ``'24,26,28'`` -> ``(24, 26, 28)``); raises :class:`~zoo.errors.ConfigError`.
    """

    name: str
    type: type
    default: Any
    help: str
    flag: str | None = None
    choices: tuple[Any, ...] | None = None
    parse: Callable[[str], Any] | None = None

    @property
    def cli_flag(self) -> str:
        """``--noise-level`` style flag."""
        return "--" + (self.flag or self.name).replace("_", "-")

    @property
    def dest(self) -> str:
        """argparse destination of the flag."""
        return (self.flag or self.name).replace("-", "_")


def format_duration(seconds: float) -> str:
    """``169`` -> ``'2 min 49 s'``, ``42.4`` -> ``'42 s'``, ``3725`` -> ``'1 h 2 min'`` (for one-line messages)."""
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True)
class CpuHint:
    """What one training step of a family's full-size recipe costs on the CPU, and the smaller override to use there.

    The family's systems warn with :meth:`message` (one line, once, at the start of ``fit`` / ``validate`` / ``test``
    / ``predict``: :meth:`zoo.systems.base.VSRSystem.setup`) when :meth:`applies`: the run is on the CPU and the model
    is full size.

    Attributes:
        override: the CPU override to compose after the recipe (``configs/<family>/tiny_cpu.yaml``).
        step_seconds: the measured wall time of one training step of the full-size recipe on this project's 2-core
            CPU (fp32, random weights); None when the step ran out of memory (:attr:`peak_rss_gb` is then the memory
            it held when it was killed).
        measured: where that figure was measured and is recorded (a ``benchmarks/results`` file).
        peak_rss_gb: the process's peak resident memory in that measurement (GB, 1e9 bytes), if recorded.
        note: a few words qualifying the figure (e.g. what the step left out), or ``''``.
        finished: False when the measured step was stopped before it ended: :attr:`step_seconds` and
            :attr:`peak_rss_gb` are then lower bounds (the time and memory when it was stopped).
        min_params: models with fewer parameters than this are not full size (tiny variants and reduced widths have
            a few million at most); models built from a named variant never are.
    """

    override: str
    step_seconds: float | None
    measured: str
    peak_rss_gb: float | None = None
    note: str = ""
    min_params: int = 50_000_000
    finished: bool = True

    def applies(self, *, device_type: str, num_params: int, variant: str | None) -> bool:
        """True for a full-size model (no named ``variant``, at least :attr:`min_params` parameters) on the CPU."""
        return device_type == "cpu" and variant is None and num_params >= self.min_params

    def message(self, family: str, num_params: int) -> str:
        """The one-line warning: family, parameter count, measured cost per training step, the override."""
        memory = ""
        if self.step_seconds is None:
            cost = "ran out of memory"
            if self.peak_rss_gb is not None:
                memory = f" (killed at {self.peak_rss_gb:.1f} GB RSS)"
        else:
            duration = format_duration(self.step_seconds)
            cost = f"took {duration}" if self.finished else f"ran more than {duration} without finishing"
            if self.peak_rss_gb is not None:
                memory = f", {self.peak_rss_gb:.1f} GB {'peak RSS' if self.finished else 'RSS when stopped'}"
        note = f", {self.note}" if self.note else ""
        return (f"{family}: full-size model ({num_params / 1e6:.1f} M parameters) on the CPU: one training step of the "
                f"full-size recipe {cost}{memory} on this project's 2-core CPU ({self.measured}{note}); for a CPU "
                f"run add --config {self.override}")


@dataclass(frozen=True)
class FamilySpec:
    """A model family as the rest of the zoo sees it.

    Attributes:
        name: the family name of ``zoo.load_pretrained(name, ...)`` and ``--model name``.
        kind: ``'regression'`` (a network maps LQ to SR in one pass) or ``'diffusion'`` (a sampler).
        paper: authors, title, venue and year.
        load: ``load(path | None, variant=None, **overrides) -> nn.Module``: the upscaler in eval mode on the CPU
            (``forward(lq (b, t, 3, h, w) [0, 1]) -> (b, t, 3, scale h, scale w)``, a ``scale`` attribute). ``path``
            None builds random weights (the ``variant``'s sizes, or full size) and warns loudly. ``overrides`` are
            the family's loader and sampling options; unknown names raise :class:`~zoo.errors.ConfigError`.
        weight_forms: the kinds of file or folder ``load`` accepts, one phrase each (for ``--help``, ``vsrzoo
            models`` and error messages).
        chunking: ``vsrzoo upscale`` defaults.
        sampling_options: diffusion families: the options ``vsrzoo upscale`` turns into flags.
        variants: named configurations (timm's habit): ``{'tiny': {...}}``, each a dict of component options that
            ``load(None, variant=...)``, the family's systems (``variant`` argument) and the tests build from.
        readme: the family's README, relative to the package (``models/<family>/README.md``).
        weight_names: names ``load`` resolves itself instead of paths (weights an installed package ships, e.g.
            Real-ESRGAN's ``'x4plus'``).
        files: the released weights the family loads, as catalogue entries (``vsrzoo weights list``); shared files
            (RAFT, AlexNet, VGG19, SPyNet) are in :data:`zoo.catalogue.SHARED_FILES` instead.
        cpu_hint: for a family whose full-size recipe is slow on a CPU: the measured cost of a training step and the
            CPU override to use instead (:class:`CpuHint`); None: no warning.
    """

    name: str
    kind: Literal["regression", "diffusion"]
    paper: str
    load: Callable[..., Any]
    weight_forms: tuple[str, ...]
    chunking: Chunking = field(default_factory=Chunking)
    sampling_options: tuple[SamplingOption, ...] = ()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    readme: str = ""
    weight_names: tuple[str, ...] = ()
    files: tuple[WeightFile, ...] = ()
    cpu_hint: CpuHint | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("regression", "diffusion"):
            raise ConfigError(f"family {self.name!r}: kind must be 'regression' or 'diffusion', got {self.kind!r}")
        names = [option.name for option in self.sampling_options]
        if len(set(names)) != len(names):
            raise ConfigError(f"family {self.name!r}: duplicate sampling options {names}")

    def variant(self, name: str) -> dict[str, Any]:
        """A copy of the named configuration.

        Raises:
            ConfigError: unknown variant (the known ones are listed).
        """
        if name not in self.variants:
            raise ConfigError(f"family {self.name!r} has no variant {name!r}; variants: {sorted(self.variants)}")
        return {key: (dict(value) if isinstance(value, Mapping) else value)
                for key, value in self.variants[name].items()}

    def split_sampling(self, overrides: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """Pop the sampling options (:attr:`sampling_options` names and ``extra``) out of a loader's ``overrides``.

        Returns:
            The popped ``{name: value}``; ``overrides`` keeps the loader options.
        """
        names = {option.name for option in self.sampling_options} | set(extra)
        return {k: overrides.pop(k) for k in list(overrides) if k in names}

    def check_variant(self, variant: str | None, path: object) -> None:
        """Refuse a named variant together with weights (variants size random networks only).

        Raises:
            ConfigError: both given.
        """
        if variant is not None and path is not None:
            raise ConfigError(f"variant={variant!r} sizes random networks; weights ({path}) fix their own sizes")

    def accepted_weights(self) -> str:
        """The weight forms as one phrase for messages."""
        return "; ".join(self.weight_forms)

    def download_hint(self) -> str:
        """``'; released weights: `vsrzoo weights download A` (or B)'`` for messages, or ``''`` without :attr:`files`."""
        if not self.files:
            return ""
        commands = " or ".join(f"`{entry.download_command}`" for entry in self.files)
        return f"; released weights: {commands} (`vsrzoo weights list` shows where each goes)"

    def readme_path(self) -> Path | None:
        """Absolute path of the family's README (None when not declared)."""
        return Path(__file__).resolve().parent / self.readme if self.readme else None


def load_or_build(spec: FamilySpec, path: Path | None, variant: str | None, overrides: dict[str, Any], *,
                  load_weights: Callable[..., Any], build: Callable[..., Any], component: str = "net") -> Any:
    """The usual ``load`` of a regression family: weights when given, else random networks (loudly).

    Args:
        spec: the family (for its name and variants).
        path: weights (then ``load_weights(path, **overrides)``), or None for random networks.
        variant: random networks only: whose ``component`` options size the net (None: the defaults).
        overrides: loader options; for random networks constructor options on top of the variant's (``use_ema`` is
            meaningless there and ignored).
        load_weights: the family's weights loader.
        build: ``build(**kwargs) -> nn.Module`` for random networks.
        component: the variant's entry holding the net's options.

    Returns:
        The net in eval mode.

    Raises:
        ConfigError: a variant together with weights, an unknown variant, or options ``build`` rejects.
    """
    if path is not None:
        if variant is not None:
            raise ConfigError(f"variant={variant!r} sizes random weights; {path} fixes its own sizes")
        return load_weights(path, **overrides)
    kwargs = spec.variant(variant)[component] if variant is not None else {}
    warnings.warn(f"{spec.name}: RANDOM weights (no weights given): the output is meaningless; for smoke runs only",
                  stacklevel=3)
    overrides.pop("use_ema", None)
    try:
        return build(**{**kwargs, **overrides}).eval()
    except TypeError as exc:
        raise ConfigError(f"{spec.name}: bad options {sorted(overrides)}: {exc}") from exc
