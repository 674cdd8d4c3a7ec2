"""Upscale-A-Video weights: local folders and this project's checkpoints (nothing is downloaded).

:func:`load_upscale_a_video` reads:

- the **released folder** (``pretrained_models/upscale_a_video`` of sczhou/Upscale-A-Video): ``unet/unet_video.bin``
  + ``unet_video_config.json``, ``vae/vae_3d.bin`` or ``vae/vae_video.bin`` + configs,
  ``propagator/raft-things.pth``, ``scheduler/``, ``low_res_scheduler/``, ``text_encoder/``, ``tokenizer/``;
  converted by :mod:`zoo.models.upscale_a_video.convert`;
- a **diffusers SD x4 upscaler folder** (``stabilityai/stable-diffusion-x4-upscaler`` layout: ``unet/``, ``vae/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``low_res_scheduler/``), the prior Upscale-A-Video is trained
  from: the image UNet is inflated (temporal layers new, at zero) and the image VAE gets the temporal decoder's
  new layers at zero when ``use_video_vae``;
- nothing (``folder=None``): random initialisation, with a loud warning.

:func:`load_upscale_a_video_pipeline` adds this project's Lightning checkpoints of the Upscale-A-Video systems
(which hold the trained layers only and name the folder the frozen ones come from) and returns the sampler
(:class:`~zoo.models.upscale_a_video.sampling.UpscaleAVideoPipeline`); :func:`upscaler_from_pipeline` checks sampling
options and wraps the sampler as an upscaler module. The family's spec (``spec.py``) is those two calls
(``zoo.load_pretrained('upscale_a_video', path, **overrides)``). Generic folder handling (which file is missing,
diffusers ``from_pretrained`` from local folders, schedulers, CLIP text encoders) is :mod:`zoo.diffusion.folders`.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.diffusion.folders import detect_folder_kind, load_clip_text, load_model, load_scheduler, read_json
from zoo.diffusion.tiles import WEIGHT_KINDS, check_window
from zoo.errors import ConfigError, InputError, WeightsError
from zoo.models.upscale_a_video import convert
from zoo.models.upscale_a_video.net import UpscaleAVideoComponents, UpscaleAVideoUNet, UpscaleAVideoVAE
from zoo.models.upscale_a_video.spec import SPEC
from zoo.weights import (
    checkpoint_info,
    hparams_of,
    is_lightning_checkpoint,
    lightning_generator_state,
    load_state,
    plain,
    read_checkpoint,
    refuse_recorded,
)

__all__ = ["FOLDER_KINDS", "RANDOM_INIT_WARNING", "load_upscale_a_video", "load_upscale_a_video_pipeline",
           "upscale_a_video_folder_kind", "upscaler_from_pipeline"]

logger = logging.getLogger(__name__)

#: Scaling factor of the SD x4 upscaler latents (``VideoUpscalePipeline`` forces it when a config lacks it).
SD_X4_SCALING_FACTOR = 0.08333

RANDOM_INIT_WARNING = (
    "Upscale-A-Video: no weights folder given, the UNet and VAE are RANDOMLY INITIALISED. A diffusion upscaler "
    "without its pretrained prior produces noise: for useful results load the released Upscale-A-Video folder, or "
    "train from a local diffusers copy of stabilityai/stable-diffusion-x4-upscaler (load_upscale_a_video(folder)).")

_OVERRIDES = ("use_video_vae", "load_text_encoder", "load_flow_net", "raft_path", "unet", "vae")


#: Marker files of the accepted folder layouts, in priority order.
FOLDER_KINDS = {"released": ("unet/unet_video.bin",), "sd_x4": ("unet/config.json",)}


def upscale_a_video_folder_kind(folder: str | Path) -> str:
    """``'released'`` (``unet/unet_video.bin``) or ``'sd_x4'`` (diffusers ``unet/config.json``).

    Raises:
        WeightsError: for a missing folder or one of neither layout.
    """
    return detect_folder_kind(folder, FOLDER_KINDS, family="Upscale-A-Video")


def _scheduler(folder: Path, name: str) -> object | None:
    """A diffusers scheduler from ``folder/name/scheduler_config.json``, or None (with a warning) when absent."""
    if not (folder / name / "scheduler_config.json").is_file():
        logger.warning("no %s found at %s; the sampler uses the SD x4 upscaler's", name, folder / name)
        return None
    return load_scheduler(folder, name)


def _flow_net(path: Path) -> nn.Module:
    from torchvision.models.optical_flow import raft_large

    net = raft_large(weights=None, progress=False)
    net.load_state_dict(convert.convert_raft_state_dict(read_checkpoint(path), net, source=str(path)))
    return net.eval()


def _load_released(folder: Path, *, use_video_vae: bool) -> tuple[nn.Module, nn.Module]:
    try:
        unet = UpscaleAVideoUNet(**convert.unet_kwargs_from_official(
            read_json(folder / "unet" / "unet_video_config.json")))
    except ConfigError as exc:
        raise WeightsError(f"{folder / 'unet' / 'unet_video_config.json'}: {exc}") from exc
    path = folder / "unet" / "unet_video.bin"
    unet.load_state_dict(convert.convert_unet_state_dict(read_checkpoint(path), unet, source=str(path)))
    name = "vae_video" if use_video_vae else "vae_3d"
    try:
        vae = UpscaleAVideoVAE(**convert.vae_kwargs_from_official(read_json(folder / "vae" / f"{name}_config.json")))
    except ConfigError as exc:
        raise WeightsError(f"{folder / 'vae' / f'{name}_config.json'}: {exc}") from exc
    path = folder / "vae" / f"{name}.bin"
    vae.load_state_dict(convert.convert_vae_state_dict(read_checkpoint(path), vae, source=str(path)))
    return unet, vae


def _load_sd_x4(folder: Path, *, use_video_vae: bool, unet_options: Mapping, vae_options: Mapping
                ) -> tuple[nn.Module, nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    image_unet = load_model(UNet2DConditionModel, folder, "unet", what="SD x4 upscaler UNet")
    image_vae = load_model(AutoencoderKL, folder, "vae", what="SD x4 upscaler VAE")
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
            if not (folder / "text_encoder").is_dir():
                raise WeightsError(f"{folder / 'text_encoder'} not found (pass load_text_encoder=False to skip the text "
                                   "encoder)")
            text_encoder, tokenizer = load_clip_text(folder)
        scheduler = _scheduler(folder, "scheduler")
        low_res_scheduler = _scheduler(folder, "low_res_scheduler")
    flow_net = _flow_net(Path(raft_path)) if raft_path is not None and overrides.get("load_flow_net", True) else None
    components = UpscaleAVideoComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                         scheduler=scheduler, low_res_scheduler=low_res_scheduler, flow_net=flow_net)
    return components.to(torch.device("cpu")).eval()


# ---------------------------------------------------------------------------------------------- sampler + upscaler
#: Options of :func:`load_upscale_a_video_pipeline` (those of :func:`load_upscale_a_video` plus checkpoint ones).
_PIPELINE_OPTIONS = _OVERRIDES + ("pretrained", "use_ema")
#: Loader options that a vsrzoo checkpoint records (its architecture): not accepted as overrides for it.
_RECORDED = ("use_video_vae", "load_text_encoder", "unet", "vae")
_CHECKPOINT_PREFIXES = ("net_g.unet.", "net_g_ema.unet.", "net_g.vae.")
_UNSET = object()


def _accepted_forms() -> str:
    return ("accepted: the released Upscale-A-Video folder (unet/unet_video.bin, vae/, propagator/, scheduler/, "
            "text_encoder/, tokenizer/), a local diffusers stabilityai/stable-diffusion-x4-upscaler folder, or a "
            "vsrzoo Lightning checkpoint (.ckpt) of zoo.models.upscale_a_video.system.UpscaleAVideo / "
            "UpscaleAVideoVAEFinetune")


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
              be given again with the ``pretrained`` override), ``unet`` / ``vae`` (SD x4 or random-init options,
              or the ``variant`` they were taken from), ``use_video_vae``; the trained weights come from the
              checkpoint (all of them for a system built without ``pretrained``). Its validation ``sampling`` options
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
            raise WeightsError(f"Upscale-A-Video weights not found: {path}; {_accepted_forms()}{SPEC.download_hint()}")
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
    refuse_recorded(source, overrides, _RECORDED)
    ckpt = read_checkpoint(path, family="upscale_a_video")
    if not is_lightning_checkpoint(ckpt, _CHECKPOINT_PREFIXES):
        hint = ""
        if path.suffix in (".bin", ".pth") or path.parent.name in ("unet", "vae", "propagator"):
            hint = f" (for the released weights pass the folder that holds unet/ and vae/, e.g. {path.parent.parent})"
        raise WeightsError(f"{source} is not an Upscale-A-Video checkpoint{hint}; {_accepted_forms()}")
    hparams = hparams_of(ckpt)
    trained_only = checkpoint_info(ckpt).get("weights") == "trained"
    state = lightning_generator_state(ckpt, use_ema=use_ema)
    folder = hparams.get("pretrained") if pretrained is _UNSET else pretrained
    if folder is not None and not Path(str(folder)).expanduser().is_dir():
        how = ("given with the pretrained option" if pretrained is not _UNSET else
               "recorded as the system's 'pretrained'")
        raise WeightsError(f"{source} was trained from the weights folder {folder} ({how}), which is not found; "
                           "it supplies the frozen networks, tokenizer and schedulers: pass its new location with the "
                           "'pretrained' option (CLI: --option pretrained=/path/to/folder)")
    folder = Path(str(folder)).expanduser() if folder is not None else None
    if trained_only and folder is None:
        raise WeightsError(f"{source} holds only the trained layers but names no 'pretrained' folder to rebuild the "
                           "frozen ones from; pass it with the 'pretrained' option")
    has_text = (bool(hparams.get("load_text_encoder", True)) if trained_only
                else any(k.startswith("text_encoder.") for k in state))
    options: dict[str, object] = dict(use_video_vae=bool(hparams.get("use_video_vae", False)),
                                      load_text_encoder=has_text and folder is not None, load_flow_net=False)
    if folder is None or upscale_a_video_folder_kind(folder) != "released":
        variant = hparams.get("variant")
        sizes = _variant_sizes(str(variant)) if variant else {}
        for name in ("unet", "vae"):
            spec = plain(hparams.get(name)) or sizes.get(name)
            if spec:
                options[name] = dict(spec)
    if has_text and folder is None:
        raise WeightsError(f"{source} holds a text encoder but records no 'pretrained' folder to take its tokenizer "
                           "from; pass it with the 'pretrained' option")
    components = _load_components(folder, options, warn_random=False)
    raft_path = overrides.get("raft_path")
    use_flow = overrides.get("load_flow_net", True)
    state = {k: v for k, v in state.items() if not k.startswith("flow_net.")} if (raft_path or not use_flow) else state
    if use_flow and raft_path is None and trained_only:
        # frozen RAFT is not in the checkpoint: the file the system was given, or the released folder's
        candidates = [hparams.get("raft_path"), folder / "propagator" / "raft-things.pth"]
        raft_path = next((c for c in candidates if c and Path(str(c)).is_file()), None)
    if use_flow and raft_path is not None:
        components.flow_net = _flow_net(Path(str(raft_path)))
    elif use_flow and any(k.startswith("flow_net.") for k in state):
        components.flow_net = raft_large(weights=None, progress=False)
    pipeline = UpscaleAVideoPipeline(components)
    load_state(pipeline, state, source=source, allow_missing=(lambda key: True) if trained_only else None)
    logger.info("Upscale-A-Video loaded from the vsrzoo checkpoint %s (folder: %s, %s weights)", source, folder,
                "trained" if trained_only else "all")
    return pipeline.eval()


def _variant_sizes(name: str) -> dict[str, dict]:
    """``unet`` / ``vae`` options of a named variant the system was built with (``hyper_parameters['variant']``)."""
    from zoo.models.upscale_a_video.spec import SPEC

    sizes = SPEC.variant(name)
    return {"unet": sizes["unet"], "vae": sizes["vae"]}


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
    from zoo.models.upscale_a_video.sampling import _check_steps

    from zoo.models.upscale_a_video.spec import parse_propagation_steps

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
    check_window(options.window, options.window_overlap, name="window")
    check_window(options.tile, options.tile_overlap, name="tile")
    if options.window_blend not in WEIGHT_KINDS:
        raise ConfigError(f"window_blend must be one of {WEIGHT_KINDS}; got {options.window_blend!r}")
    if isinstance(options.vae_chunk, bool) or not isinstance(options.vae_chunk, int) or options.vae_chunk < 1:
        raise ConfigError(f"vae_chunk must be a positive integer; got {options.vae_chunk!r}")
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(options, name), str):
            raise ConfigError(f"{name} must be a string; got {getattr(options, name)!r}")
    return upscaler.eval()
