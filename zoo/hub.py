"""Pretrained weights: a table of families and the loaders that turn a local file or folder into a ready upscaler.

Only local files are read; nothing is downloaded. :func:`load_pretrained` accepts, per family,

- ``realbasicvsr``: a checkpoint written by this project's Lightning systems (``state_dict`` with ``net_g_ema.*``
  (EMA generator) and/or ``net_g.*`` keys, generator constructor arguments in ``hyper_parameters['net']``), the
  official mmediting 0.x ``RealBasicVSR_x4.pth`` (converted by ``zoo/models/realbasicvsr/convert.py``), or a bare
  ``state_dict()`` of the net;
- ``videogigagan``: whatever :func:`zoo.models.videogigagan.convert.load_videogigagan` accepts (a vsrzoo Lightning
  checkpoint; there is no official release);
- ``upscale_a_video``: the released Upscale-A-Video folder, a diffusers SD x4 upscaler folder, or a vsrzoo
  Lightning checkpoint of :class:`~zoo.models.upscale_a_video.system.UpscaleAVideo` (see
  :func:`zoo.hub_diffusion.load_upscale_a_video_pipeline`); the result is the sampler wrapped as an upscaler module
  (``fn(lq) -> sr`` with ``.scale``), with the sampling options fixed.

The family table is a plain dict ``name -> loader(path, overrides)``; a new family adds one entry (the import path
is the registry). Loaders import their family lazily so that ``import zoo.hub`` stays cheap (no diffusers import).
"""
from __future__ import annotations

import inspect
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError

__all__ = ["DIFFUSION_FAMILIES", "FAMILIES", "UPSCALE_A_VIDEO_SAMPLING_OPTIONS", "available_families",
           "check_state_dict", "is_lightning_checkpoint", "lightning_generator_state", "load_pretrained",
           "net_kwargs_from_hparams", "read_checkpoint"]

#: Prefixes of the generator weights in this project's Lightning checkpoints (EMA first).
LIGHTNING_EMA_PREFIX = "net_g_ema."
LIGHTNING_PREFIX = "net_g."


def read_checkpoint(path: str | Path) -> object:
    """Load a PyTorch file on the CPU, safely when possible.

    First tries ``torch.load(weights_only=True)`` (tensors, containers and primitive types only). If the file
    holds other pickled objects (for example the hyper-parameters of a Lightning checkpoint saved with a
    ``Namespace`` or an ``nn.Module`` in them), it is loaded again with ``weights_only=False``, which runs
    the pickled code: only load files you trust. A warning says when this happens.

    Args:
        path: file path.

    Returns:
        The loaded object.

    Raises:
        WeightsError: if the path does not exist, is not a file, or is not a PyTorch file.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"weights path is not a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # garbage, not a pickle of disallowed objects
            raise WeightsError(f"{path} is not a PyTorch checkpoint ({str(exc).splitlines()[-1][:200]})") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types (RuntimeError, KeyError, EOFError, ...)
        raise WeightsError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    warnings.warn(f"{path} contains pickled Python objects; loading it with torch.load(weights_only=False). "
                  f"Only load checkpoints you trust.", stacklevel=3)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc


def check_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, *, source: str) -> None:
    """Check that ``state`` has exactly the keys of ``net.state_dict()`` with the same shapes.

    Args:
        state: candidate state dict.
        net: target module (may live on the ``meta`` device).
        source: name of the file, for the message.

    Raises:
        WeightsError: listing the missing, unexpected and mis-shaped keys (first 8 of each).
    """
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {tuple(getattr(state[k], 'shape', ()))} vs {tuple(own[k].shape)}" for k in own
                  if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)]
    if missing or unexpected or mismatched:
        raise WeightsError(f"{source} does not match {type(net).__name__}: {len(missing)} missing {missing[:8]}, "
                           f"{len(unexpected)} unexpected {unexpected[:8]}, {len(mismatched)} mis-shaped "
                           f"{mismatched[:8]}")


def is_lightning_checkpoint(ckpt: object) -> bool:
    """True if ``ckpt`` is a checkpoint of this project's systems (``state_dict`` with ``net_g*`` keys)."""
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    return isinstance(state, Mapping) and any(
        isinstance(k, str) and k.startswith((LIGHTNING_EMA_PREFIX, LIGHTNING_PREFIX)) for k in state)


def lightning_generator_state(ckpt: Mapping, *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Generator weights of a project Lightning checkpoint, prefix removed.

    Args:
        ckpt: loaded checkpoint (see :func:`is_lightning_checkpoint`).
        use_ema: take ``net_g_ema.*`` when present (default); a system trained without EMA has only
            ``net_g.*``, which is then used. ``use_ema=False`` always takes ``net_g.*``. An EMA stored as a
            ``torch.optim.swa_utils.AveragedModel`` (``module.*`` keys and ``n_averaged``) is unwrapped.
    """
    state = ckpt["state_dict"]
    prefix = LIGHTNING_PREFIX
    if use_ema and any(k.startswith(LIGHTNING_EMA_PREFIX) for k in state):
        prefix = LIGHTNING_EMA_PREFIX
    generator = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if "n_averaged" in generator and all(k.startswith("module.") for k in generator if k != "n_averaged"):
        # torch.optim.swa_utils.AveragedModel wrapper (EMA): weights under 'module.', plus a step counter.
        generator = {k.removeprefix("module."): v for k, v in generator.items() if k != "n_averaged"}
    return generator


def net_kwargs_from_hparams(ckpt: Mapping, net_class: type[nn.Module], *, source: str) -> dict[str, object]:
    """Constructor arguments of the generator recorded in a Lightning checkpoint's ``hyper_parameters``.

    ``hyper_parameters['net']`` (or ``['net_g']``) may be a LightningCLI spec
    ``{'class_path': ..., 'init_args': {...}}``, a plain kwargs dict, a jsonargparse ``Namespace`` or the
    module itself (then nothing is read: the layout comes from the weights).

    Returns:
        Kwargs restricted to ``net_class``'s signature (may be empty).

    Raises:
        WeightsError: if the recorded class is not ``net_class``.
    """
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return {}
    spec = hparams.get("net", hparams.get("net_g"))
    if isinstance(spec, nn.Module):
        if not isinstance(spec, net_class):
            raise WeightsError(f"{source} holds a {type(spec).__name__}, not a {net_class.__name__}")
        return {}
    if hasattr(spec, "as_dict"):  # jsonargparse Namespace
        spec = spec.as_dict()
    if not isinstance(spec, Mapping):
        return {}
    if "class_path" in spec:
        class_name = str(spec["class_path"]).rsplit(".", 1)[-1]
        if class_name != net_class.__name__:
            raise WeightsError(f"{source} holds a {spec['class_path']}, not a {net_class.__name__}")
        spec = spec.get("init_args") or {}
        if hasattr(spec, "as_dict"):
            spec = spec.as_dict()
    accepted = inspect.signature(net_class).parameters
    return {k: v for k, v in dict(spec).items() if k in accepted}


def _check_overrides(overrides: Mapping[str, object], net_class: type[nn.Module], family: str) -> None:
    """Raise ConfigError for override names that are not constructor arguments of ``net_class``."""
    accepted = inspect.signature(net_class).parameters
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for family {family!r}; accepted: "
                          f"{sorted(accepted)} and use_ema")


def _load_realbasicvsr(path: Path, overrides: dict[str, object]) -> nn.Module:
    """RealBasicVSRNet from a project Lightning checkpoint, the official mmediting file or a bare state dict."""
    from zoo.models.realbasicvsr.convert import convert_official_checkpoint, infer_net_kwargs, is_official_checkpoint
    from zoo.models.realbasicvsr.net import RealBasicVSRNet

    if path.is_dir():
        raise WeightsError(f"realbasicvsr weights path is not a file: {path} is a folder; expected a vsrzoo Lightning "
                           f".ckpt, the official RealBasicVSR_x4.pth or a RealBasicVSRNet state dict file")
    source = str(path)
    ckpt = read_checkpoint(path)
    use_ema = bool(overrides.pop("use_ema", True))
    _check_overrides(overrides, RealBasicVSRNet, "realbasicvsr")
    recorded: dict[str, object] = {}
    if is_lightning_checkpoint(ckpt):
        recorded = net_kwargs_from_hparams(ckpt, RealBasicVSRNet, source=source)
        state = lightning_generator_state(ckpt, use_ema=use_ema)
    elif is_official_checkpoint(ckpt):
        state = convert_official_checkpoint(ckpt, use_ema=use_ema, source=source)
    elif isinstance(ckpt, Mapping) and "cleaning.features.input_conv.weight" in ckpt.get("state_dict", ckpt):
        state = dict(ckpt.get("state_dict", ckpt))
    else:
        top = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightsError(f"{source} is not a RealBasicVSR checkpoint (expected a vsrzoo Lightning checkpoint, "
                           f"the official mmediting RealBasicVSR_x4.pth or a RealBasicVSRNet state dict); "
                           f"found {top}")
    # Weight layout comes from the weights; other options from the recorded config, then the overrides.
    recorded.pop("spynet_pretrained", None)  # SPyNet weights are part of the checkpoint
    kwargs = {**recorded, **infer_net_kwargs(state, source=source), **overrides}
    net = RealBasicVSRNet(**kwargs)
    check_state_dict(state, net, source=source)
    net.load_state_dict(state)
    return net.eval()


def _load_videogigagan(path: Path, overrides: dict[str, object]) -> nn.Module:
    """VideoGigaGAN generator through :func:`zoo.models.videogigagan.convert.load_videogigagan` (imported lazily)."""
    module = "zoo.models.videogigagan.convert"
    try:
        from zoo.models.videogigagan.convert import load_videogigagan
    except ImportError as exc:
        if exc.name != module and "load_videogigagan" not in str(exc):
            raise  # a real import error inside the module: show it
        raise ConfigError(f"family 'videogigagan': weights loading is not available in this installation "
                          f"({module}.load_videogigagan is missing)") from exc
    return load_videogigagan(path, **overrides)


#: Sampling options of :func:`load_pretrained` for ``'upscale_a_video'`` (fields of
#: :class:`zoo.models.upscale_a_video.sampling.SamplingOptions`); every other override is a loader option.
UPSCALE_A_VIDEO_SAMPLING_OPTIONS = ("prompt", "negative_prompt", "noise_level", "guidance_scale",
                                    "num_inference_steps", "propagation_steps", "color_fix", "seed", "window",
                                    "window_overlap", "tile", "tile_overlap", "vae_chunk", "progress")


def _load_upscale_a_video(path: Path | None, overrides: dict[str, object]) -> nn.Module:
    """Upscale-A-Video sampler as an upscaler module: ``fn(lq (b, t, 3, h, w)) -> sr (b, t, 3, 4h, 4w)``, ``.scale``.

    ``overrides`` are split into sampling options (:data:`UPSCALE_A_VIDEO_SAMPLING_OPTIONS`, fixed in the returned
    module; defaults are the official ones) and loader options of
    :func:`zoo.hub_diffusion.load_upscale_a_video_pipeline`.
    """
    from zoo.hub_diffusion import load_upscale_a_video_pipeline, upscaler_from_pipeline

    sampling = {k: overrides.pop(k) for k in list(overrides) if k in UPSCALE_A_VIDEO_SAMPLING_OPTIONS}
    pipeline = load_upscale_a_video_pipeline(path, **overrides)
    return upscaler_from_pipeline(pipeline, **sampling)


#: family name -> loader(path (file or folder; None = random initialisation where supported), overrides) -> the
#: upscaler module in eval mode on the CPU. Loaders import their family on first use.
FAMILIES: dict[str, Callable[[Path | None, dict[str, object]], nn.Module]] = {
    "realbasicvsr": _load_realbasicvsr,
    "videogigagan": _load_videogigagan,
    "upscale_a_video": _load_upscale_a_video,
}

#: Families whose upscaler is a diffusion sampler (sampling options; ``path=None`` gives random networks).
DIFFUSION_FAMILIES = frozenset({"upscale_a_video"})


def available_families() -> list[str]:
    """Names accepted by :func:`load_pretrained`, sorted."""
    return sorted(FAMILIES)


def load_pretrained(family: str, path: str | Path | None, **overrides: object) -> nn.Module:
    """Build a family's upscaler from local weights (a file or a folder), in eval mode on the CPU.

    Args:
        family: one of :func:`available_families` (``'realbasicvsr'``, ``'upscale_a_video'``, ``'videogigagan'``).
        path: the family's weights:

            - ``realbasicvsr``: a vsrzoo Lightning ``.ckpt``, the official ``RealBasicVSR_x4.pth`` or a bare
              ``state_dict()`` file;
            - ``videogigagan``: see :func:`zoo.models.videogigagan.convert.load_videogigagan`;
            - ``upscale_a_video``: the released Upscale-A-Video folder, a diffusers SD x4 upscaler folder, or a
              vsrzoo Lightning checkpoint of the ``UpscaleAVideo`` system; ``None`` only for this (diffusion)
              family: randomly initialised networks with a loud warning (results are meaningless).
        **overrides:
            ``realbasicvsr``: constructor arguments of the net applied on top of those recorded in the checkpoint
            (e.g. ``dynamic_refine_thres=5``), plus ``use_ema`` (default True: the EMA generator when present).
            ``upscale_a_video``: sampling options (:data:`UPSCALE_A_VIDEO_SAMPLING_OPTIONS`: ``noise_level`` 120,
            ``guidance_scale`` 6, ``num_inference_steps`` 30, ``prompt``, ``negative_prompt``,
            ``propagation_steps`` (), ``color_fix`` ``'wavelet'``, ``seed`` 0, ``window`` 8 / ``window_overlap``
            2 frames, ``tile`` 256 / ``tile_overlap`` 64 LQ px, ``vae_chunk`` 3, ``progress``) and loader options
            of :func:`zoo.hub_diffusion.load_upscale_a_video_pipeline` (``use_video_vae``, ``load_text_encoder``,
            ``load_flow_net``, ``raft_path``, ``unet``, ``vae``, ``pretrained``, ``use_ema``).

    Returns:
        The upscaler (``nn.Module``, ``forward(lq (b, t, 3, h, w) float [0, 1]) -> (b, t, 3, scale h, scale w)``)
        in eval mode on the CPU. The diffusion family's module has a ``scale`` attribute (4) and returns CPU float32
        in [0, 1].

    Raises:
        ConfigError: unknown family, unknown override name, ``path=None`` for a family that needs weights.
        WeightsError: missing path (named in the message), a file or folder of the wrong kind or family, or
            weights that do not match the architecture.

    Note:
        Files holding pickled Python objects are loaded with ``weights_only=False`` (see
        :func:`read_checkpoint`); only load files you trust.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; available: {available_families()}")
    if path is None:
        if family not in DIFFUSION_FAMILIES:
            raise ConfigError(f"family {family!r} needs a weights path (random initialisation is offered only for "
                              f"{sorted(DIFFUSION_FAMILIES)})")
        return FAMILIES[family](None, dict(overrides))
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file or folder not found: {path}")
    return FAMILIES[family](path, dict(overrides))
