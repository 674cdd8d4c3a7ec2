"""Upscalers of benchmark entries: the bicubic baseline, trained weights through :mod:`zoo.hub`, or random weights.

:func:`build_upscaler` turns a suite :class:`~zoo.benchmark.suite.Entry` into an :class:`Upscaler`, a callable
``lq (1, t, 3, h, w) -> sr (1, t, 3, scale h, scale w)`` that runs the net through
:func:`zoo.inference.upscale_tensor` with the entry's chunk and tile options and precision, and clamps the result
to [0, 1] (the frames a user would get). Three kinds of entry:

- the **bicubic baseline** (``family: bicubic``): :class:`BicubicUpsampler`, MATLAB ``imresize`` bicubic
  (:func:`zoo.data.degradations.bicubic_upsample`), the "Bicubic" row of VSR tables;
- **trained weights**: ``zoo.hub.load_pretrained(family, weights, **options)`` (a vsrzoo Lightning checkpoint or a
  family's official release);
- **random weights** (``weights: random``): the net ``{class_path, init_args}`` built with ``torch.manual_seed(0)``,
  or, without ``net``, the family's own random networks ``zoo.hub.load_pretrained(family, None, variant=variant,
  **options)`` (seeded the same way); for timing and wiring checks; the leaderboard labels them "random (not
  trained)".
"""
from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.benchmark.suite import Entry
from zoo.data.degradations import bicubic_upsample
from zoo.errors import ConfigError, WeightsError

__all__ = ["BicubicUpsampler", "Upscaler", "build_net", "build_upscaler", "count_parameters"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class BicubicUpsampler(nn.Module):
    """Bicubic x``scale`` upsampling of every frame: the reference row of VSR leaderboards.

    MATLAB ``imresize`` (:func:`zoo.data.degradations.bicubic_upsample`: Keys cubic a = -0.5, symmetric borders),
    so that on BI sets the row is the "Bicubic" row of the published tables.

    Args:
        scale: integer upscaling factor.
    """

    def __init__(self, *, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """``lq`` (b, t, 3, h, w) in [0, 1] -> (b, t, 3, scale h, scale w), clamped to [0, 1]."""
        return bicubic_upsample(lq, self.scale)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not, shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


def build_net(spec: Mapping[str, Any], *, seed: int = 0) -> nn.Module:
    """Build ``{'class_path': 'zoo....', 'init_args': {...}}`` with random weights (``torch.manual_seed(seed)`` first).

    ``class_path`` may name a class or a factory function of the ``zoo`` package (the import path is the registry).

    Raises:
        ConfigError: a path outside ``zoo``, an unknown module or name, or arguments the callable rejects.
    """
    class_path = str(spec.get("class_path", ""))
    if not class_path.startswith("zoo."):
        raise ConfigError(f"net class_path must name a class of the zoo package, got {class_path!r}")
    module_name, _, name = class_path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import net class_path {class_path!r}: {exc}") from exc
    torch.manual_seed(seed)
    try:
        net = factory(**dict(spec.get("init_args") or {}))
    except TypeError as exc:
        raise ConfigError(f"{class_path}: bad init_args {dict(spec.get('init_args') or {})}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{class_path} built a {type(net).__name__}, not an nn.Module")
    return net


class Upscaler:
    """A benchmark entry ready to run: ``sr = upscaler(lq)``.

    Attributes:
        entry: the suite entry.
        module: the underlying ``nn.Module`` (on ``device``, eval mode).
        scale: upscaling factor.
        device: where the net runs.
        num_params: parameters of ``module`` (0 for bicubic).
    """

    def __init__(self, *, entry: Entry, module: nn.Module, scale: int, device: torch.device) -> None:
        self.entry = entry
        self.module = module.to(device).eval()
        self.scale = scale
        self.device = device
        self.num_params = count_parameters(module)
        self._run = self._make_runner()

    @property
    def name(self) -> str:
        """The entry's name."""
        return self.entry.name

    def _make_runner(self) -> Callable[[torch.Tensor], torch.Tensor]:
        dtype = self.entry.dtype
        if dtype == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"entry {self.entry.name!r}: dtype fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        if dtype == "fp32":
            return self.module
        amp_dtype, device_type, module = _DTYPES[dtype], self.device.type, self.module

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=device_type, dtype=amp_dtype):
                return module(x)

        return run

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        """Upscale a clip.

        Args:
            lq: ``(b, t, 3, h, w)`` float32 in [0, 1] (any device).

        Returns:
            ``(b, t, 3, scale h, scale w)`` CPU float32 clamped to [0, 1].

        Raises:
            InputError / ConfigError: from :func:`zoo.inference.upscale_tensor` (bad layout, options, net output).
        """
        from zoo.inference import upscale_tensor

        entry = self.entry
        sr = upscale_tensor(self._run, lq, scale=self.scale, chunk_frames=entry.chunk_frames, overlap=entry.overlap,
                            tile=entry.tile, tile_overlap=entry.tile_overlap, device=self.device,
                            dtype=torch.float32)
        return sr.clamp_(0.0, 1.0)


def build_upscaler(entry: Entry, *, scale: int = 4, device: str | torch.device = "cpu") -> Upscaler:
    """Build the upscaler of an entry.

    Args:
        entry: the suite entry.
        scale: the suite's upscaling factor; a net with another ``scale`` attribute is refused.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'``.

    Returns:
        :class:`Upscaler`.

    Raises:
        WeightsError: missing or unusable weights file (the runner turns it into a skipped row with a note).
        ConfigError: unknown family, bad net spec or options, fp16 on CPU, a net of another scale, CUDA missing.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} asked for but CUDA is not available")
    if entry.is_bicubic:
        module: nn.Module = BicubicUpsampler(scale=scale)
    elif entry.is_random and entry.net is not None:
        module = build_net(entry.net)
    else:
        from zoo.hub import available_families, load_pretrained

        if entry.family not in available_families():
            raise ConfigError(f"entry {entry.name!r}: unknown family {entry.family!r}; available: "
                              f"{available_families()} (or 'bicubic', or weights: random with a net class_path)")
        if entry.is_random:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*RANDOM.*")  # the entry is labelled random already
                module = load_pretrained(entry.family, None, variant=entry.variant, **dict(entry.options))
        else:
            from zoo.hub import family

            weights = Path(str(entry.weights)).expanduser()
            if not weights.exists() and str(entry.weights) in family(entry.family).weight_names:
                weights = str(entry.weights)  # a name the family resolves itself (weights a package ships)
            elif not weights.exists():
                raise WeightsError(f"weights not found: {weights}")
            module = load_pretrained(entry.family, weights, **dict(entry.options))
    net_scale = getattr(module, "scale", scale)
    if net_scale != scale:
        raise ConfigError(f"entry {entry.name!r} upscales x{net_scale}, the suite is x{scale}")
    return Upscaler(entry=entry, module=module, scale=scale, device=device)
