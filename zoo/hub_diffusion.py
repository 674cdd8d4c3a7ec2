"""Loaders of the latent-diffusion families' pretrained weights (local folders only; nothing is downloaded).

:func:`load_upscale_a_video` reads, for Upscale-A-Video:

- the **released folder** (``pretrained_models/upscale_a_video`` of sczhou/Upscale-A-Video): ``unet/unet_video.bin``
  + ``unet_video_config.json``, ``vae/vae_3d.bin`` or ``vae/vae_video.bin`` + configs,
  ``propagator/raft-things.pth``, ``scheduler/``, ``low_res_scheduler/``, ``text_encoder/``, ``tokenizer/``;
  converted by :mod:`zoo.models.upscale_a_video.convert`;
- a **diffusers SD x4 upscaler folder** (``stabilityai/stable-diffusion-x4-upscaler`` layout: ``unet/``, ``vae/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``low_res_scheduler/``), the prior Upscale-A-Video is trained
  from: the image UNet is inflated (temporal layers new, at zero) and the image VAE gets the temporal decoder's
  new layers at zero when ``use_video_vae``;
- nothing (``folder=None``): random initialisation, with a loud warning.

:func:`load_upscale_a_video_pipeline` adds this project's Lightning checkpoints of the Upscale-A-Video systems and
returns the sampler (:class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoPipeline`);
:func:`upscaler_from_pipeline` checks sampling options and wraps the sampler as an upscaler module. :mod:`zoo.hub`'s
``'upscale_a_video'`` family is those two calls (``zoo.load_pretrained('upscale_a_video', path, **overrides)``).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.errors import ConfigError, InputError, WeightsError
from zoo.hub import check_state_dict, is_lightning_checkpoint, lightning_generator_state, read_checkpoint

__all__ = ["RAFT_MIN_SIZE", "RANDOM_INIT_WARNING", "check_propagation_input_size", "load_upscale_a_video",
           "load_upscale_a_video_pipeline", "parse_propagation_steps", "upscale_a_video_folder_kind",
           "upscaler_from_pipeline"]

logger = logging.getLogger(__name__)

#: Scaling factor of the SD x4 upscaler latents (``VideoUpscalePipeline`` forces it when a config lacks it).
SD_X4_SCALING_FACTOR = 0.08333

RANDOM_INIT_WARNING = (
    "Upscale-A-Video: no weights folder given, the UNet and VAE are RANDOMLY INITIALISED. A diffusion upscaler "
    "without its pretrained prior produces noise: for useful results load the released Upscale-A-Video folder, or "
    "train from a local diffusers copy of stabilityai/stable-diffusion-x4-upscaler (load_upscale_a_video(folder)).")

_OVERRIDES = ("use_video_vae", "load_text_encoder", "load_flow_net", "raft_path", "unet", "vae")


def upscale_a_video_folder_kind(folder: str | Path) -> str:
    """``'released'`` (``unet/unet_video.bin``) or ``'sd_x4'`` (diffusers ``unet/config.json``).

    Raises:
        WeightsError: for a missing folder or one of neither layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"Upscale-A-Video weights folder not found: {folder}")
    if (folder / "unet" / "unet_video.bin").is_file():
        return "released"
    if (folder / "unet" / "config.json").is_file():
        return "sd_x4"
    raise WeightsError(f"{folder} is neither the released Upscale-A-Video folder (unet/unet_video.bin) nor a "
                       "diffusers SD x4 upscaler folder (unet/config.json)")


def _scheduler(folder: Path, name: str) -> object | None:
    """A diffusers scheduler from ``folder/name/scheduler_config.json`` (class from its ``_class_name``)."""
    import diffusers
    from diffusers import SchedulerMixin

    from zoo.models.upscale_a_video.convert import read_official_config

    path = folder / name / "scheduler_config.json"
    if not path.is_file():
        logger.warning("no %s found at %s; the sampler must be given one", name, path)
        return None
    config = read_official_config(path)
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise WeightsError(f"{path}: unknown scheduler class {config.get('_class_name')!r}")
    return cls.from_config(config)


def _text_encoder(folder: Path) -> tuple[nn.Module, object]:
    from transformers import CLIPTextModel, CLIPTokenizer

    for sub in ("text_encoder", "tokenizer"):
        if not (folder / sub).is_dir():
            raise WeightsError(f"{folder / sub} not found (pass load_text_encoder=False to skip the text encoder)")
    try:
        encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot load the CLIP text encoder / tokenizer from {folder}: {exc}") from exc
    return encoder.eval(), tokenizer


def _flow_net(path: Path) -> nn.Module:
    from torchvision.models.optical_flow import raft_large

    from zoo.models.upscale_a_video.convert import convert_raft_state_dict

    net = raft_large(weights=None, progress=False)
    net.load_state_dict(convert_raft_state_dict(read_checkpoint(path), net, source=str(path)))
    return net.eval()


def _load_released(folder: Path, *, use_video_vae: bool) -> tuple[nn.Module, nn.Module]:
    from zoo.models.upscale_a_video import convert
    from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE

    try:
        unet = UpscaleAVideoUNet(**convert.unet_kwargs_from_official(
            convert.read_official_config(folder / "unet" / "unet_video_config.json")))
    except ConfigError as exc:
        raise WeightsError(f"{folder / 'unet' / 'unet_video_config.json'}: {exc}") from exc
    path = folder / "unet" / "unet_video.bin"
    unet.load_state_dict(convert.convert_unet_state_dict(read_checkpoint(path), unet, source=str(path)))
    name = "vae_video" if use_video_vae else "vae_3d"
    try:
        vae = UpscaleAVideoVAE(**convert.vae_kwargs_from_official(
            convert.read_official_config(folder / "vae" / f"{name}_config.json")))
    except ConfigError as exc:
        raise WeightsError(f"{folder / 'vae' / f'{name}_config.json'}: {exc}") from exc
    path = folder / "vae" / f"{name}.bin"
    vae.load_state_dict(convert.convert_vae_state_dict(read_checkpoint(path), vae, source=str(path)))
    return unet, vae


def _load_sd_x4(folder: Path, *, use_video_vae: bool, unet_options: Mapping, vae_options: Mapping
                ) -> tuple[nn.Module, nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE

    try:
        image_unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        image_vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise WeightsError(f"cannot load the diffusers SD x4 upscaler from {folder}: {exc}") from exc
    scaling = image_vae.config.get("scaling_factor")
    if scaling != SD_X4_SCALING_FACTOR:
        warnings.warn(f"{folder / 'vae'}: scaling_factor {scaling} is not the SD x4 upscaler's "
                      f"{SD_X4_SCALING_FACTOR}; using {SD_X4_SCALING_FACTOR} (as the official pipeline does)",
                      stacklevel=3)
        image_vae.register_to_config(scaling_factor=SD_X4_SCALING_FACTOR)
    unet = UpscaleAVideoUNet.from_image_unet(image_unet, **unet_options)
    vae_kwargs = dict(lq_condition=use_video_vae, temporal_convs=use_video_vae)
    vae_kwargs.update(vae_options)
    vae = UpscaleAVideoVAE.from_image_vae(image_vae, **vae_kwargs)
    logger.info("Upscale-A-Video initialised from the SD x4 upscaler at %s: temporal layers are new (zero at "
                "their outputs) and need training", folder)
    return unet, vae


def load_upscale_a_video(folder: str | Path | None, **overrides: object) -> nn.Module:
    """Load Upscale-A-Video's networks from a local folder (released weights or the SD x4 upscaler prior).

    Args:
        folder: the released ``upscale_a_video`` folder, a diffusers SD x4 upscaler folder, or None for random
            initialisation (a loud warning: a pretrained prior is needed for useful results).
        **overrides:
            ``use_video_vae`` (bool, default False, the official default): released folder: load
            ``vae_video.bin`` (LQ-conditioned temporal decoder) instead of ``vae_3d.bin``; SD x4 folder / random:
            build the temporal decoder (new layers at zero) instead of the plain one.
            ``load_text_encoder`` (bool, default True): load ``text_encoder/`` + ``tokenizer/`` (transformers CLIP).
            ``load_flow_net`` (bool, default True): load ``propagator/raft-things.pth`` as torchvision
            ``raft_large`` when present.
            ``raft_path`` (path): RAFT weights (official format) from elsewhere.
            ``unet`` / ``vae`` (dict): SD x4 or random init only: options of :class:`UpscaleAVideoUNet` /
            :class:`UpscaleAVideoVAE` (random init: the whole configuration, e.g. a tiny one; SD x4: temporal
            options such as ``norm_over_time``).

    Returns:
        :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoComponents` in eval mode on the CPU (float32).

    Raises:
        WeightsError: missing folder or files, files that do not match the networks.
        ConfigError: unknown overrides, or ``unet``/``vae`` options given for the released folder.
    """
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise ConfigError(f"load_upscale_a_video: unknown overrides {unknown}; known: {list(_OVERRIDES)}")
    return _load_components(folder, overrides, warn_random=True)


def _load_components(folder: str | Path | None, overrides: Mapping[str, object], *, warn_random: bool) -> nn.Module:
    """:func:`load_upscale_a_video` without the option-name check; ``warn_random=False`` when the random networks
    are about to receive weights (a vsrzoo checkpoint)."""
    from zoo.models.upscale_a_video.net import UpscaleAVideoComponents, UpscaleAVideoUNet, UpscaleAVideoVAE

    use_video_vae = bool(overrides.get("use_video_vae", False))
    unet_options = dict(overrides.get("unet") or {})
    vae_options = dict(overrides.get("vae") or {})
    raft_path = overrides.get("raft_path")

    text_encoder = tokenizer = scheduler = low_res_scheduler = None
    if folder is None:
        if warn_random:
            warnings.warn(RANDOM_INIT_WARNING, stacklevel=3)
            logger.warning(RANDOM_INIT_WARNING)
        unet = UpscaleAVideoUNet(**unet_options)
        vae_kwargs = dict(lq_condition=use_video_vae, temporal_convs=use_video_vae)
        vae_kwargs.update(vae_options)
        vae = UpscaleAVideoVAE(**vae_kwargs)
    else:
        folder = Path(folder)
        kind = upscale_a_video_folder_kind(folder)
        if kind == "released":
            if unet_options or vae_options:
                raise ConfigError("the released Upscale-A-Video folder fixes the architecture; unet/vae options "
                                  "apply to the SD x4 folder or random initialisation only")
            unet, vae = _load_released(folder, use_video_vae=use_video_vae)
            if raft_path is None and overrides.get("load_flow_net", True):
                candidate = folder / "propagator" / "raft-things.pth"
                raft_path = candidate if candidate.is_file() else None
        else:
            unet, vae = _load_sd_x4(folder, use_video_vae=use_video_vae, unet_options=unet_options,
                                    vae_options=vae_options)
        if overrides.get("load_text_encoder", True):
            text_encoder, tokenizer = _text_encoder(folder)
        scheduler = _scheduler(folder, "scheduler")
        low_res_scheduler = _scheduler(folder, "low_res_scheduler")
    flow_net = _flow_net(Path(raft_path)) if raft_path is not None and overrides.get("load_flow_net", True) else None
    components = UpscaleAVideoComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                         scheduler=scheduler, low_res_scheduler=low_res_scheduler, flow_net=flow_net)
    return components.to(torch.device("cpu")).eval()


# ---------------------------------------------------------------------------------------------- sampler + upscaler
#: Smallest frame side (LQ px) torchvision's ``raft_large`` accepts: its correlation pyramid needs feature maps of at
#: least 16 px at 1/8 resolution. Latent propagation runs RAFT on whole LQ frames.
RAFT_MIN_SIZE = 128

#: Options of :func:`load_upscale_a_video_pipeline` (those of :func:`load_upscale_a_video` plus checkpoint ones).
_PIPELINE_OPTIONS = _OVERRIDES + ("pretrained", "use_ema")
#: Loader options that a vsrzoo checkpoint records (its architecture): not accepted as overrides for it.
_RECORDED = ("use_video_vae", "load_text_encoder", "unet", "vae")
_CHECKPOINT_PREFIXES = ("net_g.unet.", "net_g_ema.unet.")
_UNSET = object()


def _accepted_forms() -> str:
    return ("accepted: the released Upscale-A-Video folder (unet/unet_video.bin, vae/, propagator/, scheduler/, "
            "text_encoder/, tokenizer/), a local diffusers stabilityai/stable-diffusion-x4-upscaler folder, or a "
            "vsrzoo Lightning checkpoint (.ckpt) of zoo.models.upscale_a_video.system.UpscaleAVideo / "
            "UpscaleAVideoVAEFinetune")


def _plain(value: object) -> object:
    """A jsonargparse ``Namespace`` (as Lightning may record hyper-parameters) as a dict; anything else as is."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def load_upscale_a_video_pipeline(path: str | Path | None, **overrides: object) -> nn.Module:
    """The Upscale-A-Video sampler from a released / SD x4 folder, a vsrzoo Lightning checkpoint, or random networks.

    Args:
        path:

            - a **folder**: the released Upscale-A-Video folder or a diffusers SD x4 upscaler folder, loaded by
              :func:`load_upscale_a_video` (``overrides`` are its options);
            - a **file**: a Lightning checkpoint written by :class:`~zoo.models.upscale_a_video.system.UpscaleAVideo`
              or :class:`~zoo.models.upscale_a_video.system.UpscaleAVideoVAEFinetune` (``state_dict`` keys
              ``net_g.unet.*``, ``net_g.vae.*``, ``net_g.text_encoder.*``, ``net_g.flow_net.*``). The system's
              ``hyper_parameters`` say how to rebuild it: ``pretrained`` (the folder it started from, which supplies
              the architecture of the released networks, the tokenizer and the schedulers; it must still exist, or
              be given again with the ``pretrained`` override), ``unet`` / ``vae`` (SD x4 or random-init options),
              ``use_video_vae``; the weights then all come from the checkpoint. Its validation ``sampling`` options
              are not used (they are usually reduced);
            - ``None``: random networks with a loud warning (results are meaningless; for trying the pipeline).
        **overrides: :func:`load_upscale_a_video` options (``use_video_vae``, ``load_text_encoder``,
            ``load_flow_net``, ``raft_path``, ``unet``, ``vae``); for a checkpoint only ``load_flow_net`` (False drops
            its RAFT), ``raft_path`` (RAFT weights from that official file instead), ``pretrained`` (where the
            folder it was trained from is now) and ``use_ema`` (default True: ``net_g_ema.*`` when present).

    Returns:
        :class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoPipeline` in eval mode on the CPU.

    Raises:
        WeightsError: missing path (named), a file that is not such a checkpoint (the accepted forms are listed), a
            checkpoint whose ``pretrained`` folder is gone, weights that do not match the networks.
        ConfigError: unknown override names, or options the checkpoint records (``use_video_vae``, ``unet``,
            ``vae``, ``load_text_encoder``) given for a checkpoint.
    """
    from zoo.models.upscale_a_video.sampling import UpscaleAVideoPipeline

    unknown = sorted(set(overrides) - set(_PIPELINE_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown Upscale-A-Video loader option(s) {unknown}; loader options: "
                          f"{list(_PIPELINE_OPTIONS)} (sampling options go to upscaler_from_pipeline)")
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise WeightsError(f"Upscale-A-Video weights not found: {path}; {_accepted_forms()}")
        if path.is_file():
            return _pipeline_from_checkpoint(path, **overrides)
    given = sorted(k for k in ("pretrained", "use_ema") if k in overrides)
    if given:
        raise ConfigError(f"option(s) {given} apply to a vsrzoo Lightning checkpoint only, not to "
                          f"{'random networks' if path is None else f'the folder {path}'}")
    return UpscaleAVideoPipeline(load_upscale_a_video(path, **overrides)).eval()


def _pipeline_from_checkpoint(path: Path, *, pretrained: object = _UNSET, use_ema: bool = True,
                              **overrides: object) -> nn.Module:
    """:func:`load_upscale_a_video_pipeline` for a vsrzoo Lightning checkpoint file."""
    from torchvision.models.optical_flow import raft_large

    from zoo.models.upscale_a_video.sampling import UpscaleAVideoPipeline

    source = str(path)
    recorded_given = sorted(k for k in _RECORDED if k in overrides)
    if recorded_given:
        raise ConfigError(f"{source}: {recorded_given} are recorded in the checkpoint and cannot be overridden")
    ckpt = read_checkpoint(path)
    if not (is_lightning_checkpoint(ckpt) and any(k.startswith(_CHECKPOINT_PREFIXES) for k in ckpt["state_dict"])):
        hint = ""
        if path.suffix in (".bin", ".pth") or path.parent.name in ("unet", "vae", "propagator"):
            hint = f" (for the released weights pass the folder that holds unet/ and vae/, e.g. {path.parent.parent})"
        raise WeightsError(f"{source} is not an Upscale-A-Video checkpoint{hint}; {_accepted_forms()}")
    hparams = _plain(ckpt.get("hyper_parameters")) or {}
    if not isinstance(hparams, Mapping):
        hparams = {}
    state = lightning_generator_state(ckpt, use_ema=use_ema)
    folder = hparams.get("pretrained") if pretrained is _UNSET else pretrained
    if folder is not None and not Path(str(folder)).expanduser().is_dir():
        how = ("given with the pretrained option" if pretrained is not _UNSET else
               "recorded as the system's 'pretrained'")
        raise WeightsError(f"{source} was trained from the weights folder {folder} ({how}), which is not found; "
                           "it supplies the architecture, tokenizer and schedulers: pass its new location with the "
                           "'pretrained' option (CLI: --option pretrained=/path/to/folder)")
    folder = Path(str(folder)).expanduser() if folder is not None else None
    options: dict[str, object] = dict(
        use_video_vae=bool(hparams.get("use_video_vae", False)),
        load_text_encoder=any(k.startswith("text_encoder.") for k in state),
        load_flow_net=False,
    )
    if folder is None or upscale_a_video_folder_kind(folder) != "released":
        for name in ("unet", "vae"):
            spec = _plain(hparams.get(name))
            if spec:
                options[name] = dict(spec)
    if options["load_text_encoder"] and folder is None:
        raise WeightsError(f"{source} holds a text encoder but records no 'pretrained' folder to take its tokenizer "
                           "from; pass it with the 'pretrained' option")
    components = _load_components(folder, options, warn_random=False)
    raft_path = overrides.get("raft_path")
    keep_flow = overrides.get("load_flow_net", True) and raft_path is None
    if not keep_flow:
        state = {k: v for k, v in state.items() if not k.startswith("flow_net.")}
    if raft_path is not None and overrides.get("load_flow_net", True):
        components.flow_net = _flow_net(Path(str(raft_path)))
    elif keep_flow and any(k.startswith("flow_net.") for k in state):
        components.flow_net = raft_large(weights=None, progress=False)
    pipeline = UpscaleAVideoPipeline(components)
    check_state_dict(state, pipeline, source=source)
    pipeline.load_state_dict(state)
    logger.info("Upscale-A-Video loaded from the vsrzoo checkpoint %s (folder: %s)", source, folder)
    return pipeline.eval()


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


def upscaler_from_pipeline(pipeline: nn.Module, **sampling: object) -> nn.Module:
    """Check sampling options against the sampler and wrap it as an upscaler module (``pipeline.as_upscaler``).

    Checks up front what the sampler would check only while running (so a bad option fails before any work):
    names, ``noise_level`` in [0, the UNet's maximum], ``num_inference_steps`` >= 1, ``propagation_steps`` in
    ``[0, num_inference_steps)`` and a flow network for them, ``color_fix``, windows, tiles and ``vae_chunk``.

    Args:
        pipeline: :class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoPipeline`.
        **sampling: fields of :class:`~zoo.models.upscale_a_video.sampling.SamplingOptions` (official defaults for
            the others); ``propagation_steps`` may be a comma list ``'24,26,28'``.

    Returns:
        :class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoUpscaler` in eval mode:
        ``forward(lq (b, t, 3, h, w) float [0, 1]) -> sr (b, t, 3, 4h, 4w) CPU float32 [0, 1]``, ``scale`` 4.

    Raises:
        ConfigError: unknown option names or invalid values.
    """
    from zoo.layers.color import COLOR_FIXES
    from zoo.models.upscale_a_video.sampling import _check_steps, _check_tiling

    if "propagation_steps" in sampling:
        sampling = dict(sampling, propagation_steps=parse_propagation_steps(sampling["propagation_steps"]))
    upscaler = pipeline.as_upscaler(**sampling)  # ConfigError for unknown names
    options = upscaler.options
    max_level = getattr(pipeline.unet, "max_noise_level", 350)
    level = options.noise_level
    if isinstance(level, bool) or not isinstance(level, (int, float)) or int(level) != level or not (
            0 <= level <= max_level):
        raise ConfigError(f"noise_level must be an integer in [0, {max_level}]; got {level!r}")
    if isinstance(options.guidance_scale, bool) or not isinstance(options.guidance_scale, (int, float)):
        raise ConfigError(f"guidance_scale must be a number; got {options.guidance_scale!r}")
    if isinstance(options.num_inference_steps, bool):
        raise ConfigError(f"num_inference_steps must be a positive integer; got {options.num_inference_steps!r}")
    steps = _check_steps(options.num_inference_steps, options.propagation_steps)
    if steps and pipeline.flow_net is None:
        raise ConfigError("propagation_steps need a flow network (RAFT): load the released folder with its "
                          "propagator/raft-things.pth, or give raft_path")
    if options.color_fix not in COLOR_FIXES:
        raise ConfigError(f"color_fix must be one of {COLOR_FIXES}; got {options.color_fix!r}")
    _check_tiling(options.window, options.window_overlap, name="window")
    _check_tiling(options.tile, options.tile_overlap)
    if isinstance(options.vae_chunk, bool) or not isinstance(options.vae_chunk, int) or options.vae_chunk < 1:
        raise ConfigError(f"vae_chunk must be a positive integer; got {options.vae_chunk!r}")
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(options, name), str):
            raise ConfigError(f"{name} must be a string; got {getattr(options, name)!r}")
    return upscaler.eval()


def check_propagation_input_size(upscaler: nn.Module, height: int, width: int) -> None:
    """Refuse LQ frames too small for latent propagation before any work (RAFT runs on whole LQ frames).

    Args:
        upscaler: from :func:`upscaler_from_pipeline` (anything without ``options.propagation_steps`` passes).
        height, width: LQ frame size in pixels.

    Raises:
        InputError: ``propagation_steps`` are set and ``min(height, width) < RAFT_MIN_SIZE`` (128 px).
    """
    options = getattr(upscaler, "options", None)
    if getattr(options, "propagation_steps", ()) and min(height, width) < RAFT_MIN_SIZE:
        raise InputError(f"latent propagation runs RAFT on the LQ frames, which needs frames of at least "
                         f"{RAFT_MIN_SIZE}x{RAFT_MIN_SIZE} px (torchvision raft_large); got {width}x{height}: drop the "
                         "propagation steps for this input")
