"""DC-VSR weights: the authors' released UNet, a local Stable Video Diffusion folder, or this project's checkpoints.

The authors released only the fine-tuned UNet (its EMA): a diffusers ``UNetSpatioTemporalConditionModel`` folder
``unet_ema/`` with ``config.json`` and ``diffusion_pytorch_model.safetensors``, with no VAE, scheduler or inference
code. What loads here (nothing is downloaded):

- the **released UNet**: the ``unet_ema/`` folder (or a folder holding it), whose ``config.json`` decides the UNet's
  shapes (``in_channels`` must be twice the VAE's latent channels: the noisy and the condition latents), together with
  a local **SVD folder** (option ``svd``: ``stabilityai/stable-video-diffusion-img2vid`` layout) for the VAE
  (``vae/``, an ``AutoencoderKLTemporalDecoder``), the scheduler (``scheduler/``, SVD's EDM Euler sampler) and, for
  ``image_embedding='clip'``, ``image_encoder/``;
- an **SVD folder** alone: SVD's own UNet, not fine-tuned for super-resolution (warned; the start of training);
- a **vsrzoo checkpoint** of :class:`~zoo.models.dc_vsr.system.DCVSR`: the trained UNet weights, naming the SVD folder
  (and released UNet) it was built from (option ``svd`` points elsewhere);
- nothing: random networks (SVD img2vid sizes or a ``variant``), with a loud warning.

Every wrong or incomplete folder fails with one line naming the file.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.diffusion.bases import SVD_UNET, SVD_VAE, is_svd_schedule
from zoo.diffusion.folders import WEIGHT_FILES, load_model, load_scheduler, read_json, require_files
from zoo.errors import ConfigError, WeightsError
from zoo.models.dc_vsr.spec import SPEC, SVD_IMG2VID
from zoo.weights import checkpoint_info, hparams_of, is_lightning_checkpoint, lightning_generator_state, load_state, \
    plain, read_checkpoint, refuse_recorded

__all__ = ["RANDOM_INIT_WARNING", "build_pipeline", "check_svd_folder", "find_unet_folder", "load_dcvsr_pipeline",
           "upscaler_from_pipeline"]

logger = logging.getLogger(__name__)

UNET_CLASS = "UNetSpatioTemporalConditionModel"
#: Files an SVD folder must have for DC-VSR (the UNet and image encoder are checked when used).
SVD_FILES = ("vae/config.json", "scheduler/scheduler_config.json")

RANDOM_INIT_WARNING = (
    "DC-VSR: no weights given, the UNet and VAE are RANDOMLY INITIALISED. DC-VSR is a fine-tuned Stable Video "
    "Diffusion; without its weights the output is meaningless (smoke runs and timing only). Pass the released unet_ema "
    "folder (with --option svd=/path/to/stable-video-diffusion-img2vid) or a vsrzoo checkpoint.")


def _accepted() -> str:
    return ("accepted: the released DC-VSR UNet folder (unet_ema/ with config.json and "
            "diffusion_pytorch_model.safetensors, plus option svd=SVD_FOLDER for the VAE and scheduler), a local "
            "stable-video-diffusion-img2vid folder (unet/, vae/, scheduler/; UNet not fine-tuned), a vsrzoo .ckpt of "
            "zoo.models.dc_vsr.system.DCVSR, or random weights")


def check_svd_folder(folder: str | Path) -> Path:
    """Check that ``folder`` is a local Stable Video Diffusion img2vid folder (VAE and scheduler).

    Raises:
        WeightsError: a missing folder or file (named), a VAE of another class, or a scheduler that is not SVD's EDM
            Euler sampler (v-prediction, Karras sigmas, continuous timesteps).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"DC-VSR svd folder not found: {folder} (a local stable-video-diffusion-img2vid copy: "
                           f"vae/, scheduler/, optionally unet/ and image_encoder/; `{SVD_IMG2VID.download_command}` "
                           f"fetches it to {SVD_IMG2VID.path()})")
    require_files(folder, SVD_FILES, what="DC-VSR Stable Video Diffusion folder")
    name = read_json(folder / "vae" / "config.json").get("_class_name")
    if name != "AutoencoderKLTemporalDecoder":
        raise WeightsError(f"{folder / 'vae' / 'config.json'}: class {name!r}, but DC-VSR needs Stable Video "
                           "Diffusion's AutoencoderKLTemporalDecoder")
    schedule = read_json(folder / "scheduler" / "scheduler_config.json")
    if not is_svd_schedule(schedule):
        raise WeightsError(f"{folder / 'scheduler' / 'scheduler_config.json'}: {schedule.get('_class_name')} with "
                           f"prediction_type {schedule.get('prediction_type')!r}, use_karras_sigmas "
                           f"{schedule.get('use_karras_sigmas')!r}, timestep_type {schedule.get('timestep_type')!r}; "
                           "DC-VSR needs SVD's EulerDiscreteScheduler (v_prediction, Karras sigmas, continuous)")
    return folder


def find_unet_folder(path: str | Path, *, latent_channels: int = 4) -> Path:
    """The released-layout UNet folder at ``path``: ``path`` itself (``config.json`` of a
    ``UNetSpatioTemporalConditionModel``) or ``path/unet_ema``.

    Raises:
        WeightsError: no ``config.json`` there, another class, ``in_channels`` not ``2 x latent_channels``, or no
            weights file (each names the file).
    """
    path = Path(path).expanduser()
    folder = path if (path / "config.json").is_file() else path / "unet_ema"
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"DC-VSR UNet: {config_file} not found; {_accepted()}")
    config = read_json(config_file)
    if config.get("_class_name") != UNET_CLASS:
        raise WeightsError(f"{config_file}: class {config.get('_class_name')!r}, but DC-VSR's UNet is a {UNET_CLASS}")
    if int(config.get("in_channels", 0)) != 2 * latent_channels:
        raise WeightsError(f"{config_file}: in_channels {config.get('in_channels')}, but DC-VSR's UNet takes "
                           f"{2 * latent_channels} (the noisy latent and the condition latent)")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise WeightsError(f"DC-VSR UNet: {folder / WEIGHT_FILES[0]} not found")
    return folder


def _variant(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    return SPEC.variant(name)


def build_pipeline(svd: str | Path | None = None, *, unet_weights: str | Path | None = None,
                   variant: str | None = None, unet: Mapping | None = None, vae: Mapping | None = None,
                   propagation: Mapping | None = None, conditioning: Mapping | None = None,
                   warn_random: bool = True) -> nn.Module:
    """:class:`~zoo.models.dc_vsr.sampling.DCVSRPipeline` in eval mode on the CPU.

    Args:
        svd: a local SVD img2vid folder (:func:`check_svd_folder`): VAE, scheduler, and the UNet unless
            ``unet_weights`` is given. None: random VAE (SVD sizes or the variant's) and SVD's scheduler.
        unet_weights: the released ``unet_ema`` folder (:func:`find_unet_folder`), or None: the SVD folder's
            ``unet/``, or a random UNet when there is no SVD folder.
        variant: random networks only: a name of ``spec.VARIANTS``.
        unet, vae: random networks only: diffusers options over SVD's.
        propagation, conditioning: :data:`~zoo.models.dc_vsr.sampling.PROPAGATION_DEFAULTS` /
            :data:`~zoo.models.dc_vsr.sampling.CONDITIONING_DEFAULTS` keys.
        warn_random: warn about random networks (off when a checkpoint is about to supply the weights).

    Raises:
        ConfigError: a variant or sizes together with folders; bad options.
        WeightsError: unusable folders (the file is named).
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from zoo.models.dc_vsr.sampling import DCVSRPipeline

    sizes = _variant(variant)
    if (svd is not None or unet_weights is not None) and (variant is not None or unet or vae):
        raise ConfigError("variant/unet/vae size random networks only; the folders fix their own sizes")
    scheduler = image_encoder = None
    if svd is not None:
        folder = check_svd_folder(svd)
        base_vae = load_model(AutoencoderKLTemporalDecoder, folder, "vae", what="DC-VSR VAE (SVD)")
        scheduler = load_scheduler(folder, "scheduler")
        if unet_weights is None and not (folder / "unet" / "config.json").is_file():
            raise WeightsError(f"DC-VSR: {folder / 'unet' / 'config.json'} not found; pass the released unet_ema "
                               "folder as the weights, or an SVD folder with its unet/")
        if (conditioning or {}).get("image_embedding") == "clip":
            from transformers import CLIPVisionModelWithProjection

            image_encoder = load_model(CLIPVisionModelWithProjection, folder, "image_encoder",
                                       what="DC-VSR image encoder (SVD)").eval()
    else:
        base_vae = AutoencoderKLTemporalDecoder(**{**SVD_VAE, **dict(sizes.get("vae") or {}), **dict(vae or {})})
    if unet_weights is not None:
        unet_folder = find_unet_folder(unet_weights, latent_channels=int(base_vae.config.latent_channels))
        base_unet = load_model(UNetSpatioTemporalConditionModel, unet_folder.parent, unet_folder.name,
                               what="DC-VSR UNet")
    elif svd is not None:
        base_unet = load_model(UNetSpatioTemporalConditionModel, folder, "unet", what="DC-VSR UNet (SVD)")
    else:
        if warn_random:
            warnings.warn(RANDOM_INIT_WARNING, stacklevel=3)
            logger.warning(RANDOM_INIT_WARNING)
        base_unet = UNetSpatioTemporalConditionModel(**{**SVD_UNET, **dict(sizes.get("unet") or {}),
                                                        **dict(unet or {})})
    if svd is None and unet_weights is not None and warn_random:
        message = ("DC-VSR: no svd folder given, the VAE is RANDOMLY INITIALISED (the released UNet needs Stable "
                   "Video Diffusion's VAE: --option svd=/path/to/stable-video-diffusion-img2vid)")
        warnings.warn(message, stacklevel=3)
        logger.warning(message)
    for net in (base_unet, base_vae, image_encoder):
        if net is not None:
            net.requires_grad_(False)
    pipeline = DCVSRPipeline(unet=base_unet, vae=base_vae, scheduler=scheduler, image_encoder=image_encoder,
                             propagation=dict(propagation or {}), conditioning=dict(conditioning or {}))
    return pipeline.to(torch.device("cpu")).eval()


#: Loader options of :func:`load_dcvsr_pipeline`.
_LOADER_OPTIONS = ("svd", "variant", "unet", "vae", "propagation", "conditioning")
#: What a checkpoint records and cannot be changed for it.
_RECORDED = ("variant", "unet", "vae")


def load_dcvsr_pipeline(path: str | Path | None, **overrides: Any) -> nn.Module:
    """The DC-VSR pipeline from any accepted weights (module docstring).

    Args:
        path: the released ``unet_ema`` folder (or a folder holding it), an SVD folder, a ``.ckpt`` of
            :class:`~zoo.models.dc_vsr.system.DCVSR`, or None (random, loud).
        **overrides: ``svd`` (the SVD folder; for a checkpoint: where its SVD folder is now), ``propagation`` /
            ``conditioning`` dicts (over the defaults or what a checkpoint recorded), and for random networks
            ``variant``, ``unet``, ``vae``.

    Raises:
        WeightsError: missing path, a file or folder of no accepted form (the forms are listed), unusable folders.
        ConfigError: unknown or recorded options.
    """
    unknown = sorted(set(overrides) - set(_LOADER_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown DC-VSR loader option(s) {unknown}; loader options: {list(_LOADER_OPTIONS)} "
                          "(sampling options go to upscaler_from_pipeline)")
    overrides = {k: plain(v) for k, v in overrides.items()}
    svd = overrides.pop("svd", None)
    if path is None:
        return build_pipeline(svd, **overrides)
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"DC-VSR weights not found: {path}; {_accepted()}{SPEC.download_hint()}")
    if path.is_file():
        return _from_checkpoint(path, svd=svd, **overrides)
    for key in ("variant", "unet", "vae"):
        if overrides.get(key) is not None:
            raise ConfigError(f"{key} sizes random networks; {path} fixes its own sizes")
        overrides.pop(key, None)
    if (path / "config.json").is_file() or (path / "unet_ema").is_dir():
        if svd is None:
            raise WeightsError(f"{path} is the DC-VSR UNet alone; pass the Stable Video Diffusion folder for its VAE "
                               "and scheduler: --option svd=/path/to/stable-video-diffusion-img2vid")
        return build_pipeline(svd, unet_weights=path, **overrides)
    if (path / "vae").is_dir() or (path / "unet").is_dir():
        if svd is not None:
            raise ConfigError(f"{path} is itself a Stable Video Diffusion folder; the svd option is for the released "
                              "UNet and checkpoints")
        warnings.warn(f"DC-VSR: {path} is a Stable Video Diffusion folder; its UNet is NOT fine-tuned for "
                      "super-resolution (it reads the condition latent as SVD's first-frame latent): train it "
                      "(lightning fit --config zoo/dc_vsr.yaml) or pass the released unet_ema folder", stacklevel=2)
        return build_pipeline(path, **overrides)
    raise WeightsError(f"{path}: no known DC-VSR weights layout; {_accepted()}")


def _from_checkpoint(path: Path, *, svd: object = None, **overrides: Any) -> nn.Module:
    source = str(path)
    refuse_recorded(source, overrides, _RECORDED)
    ckpt = read_checkpoint(path, family="dc_vsr")
    if not is_lightning_checkpoint(ckpt, ("net_g.unet.",)):
        raise WeightsError(f"{source} is not a DC-VSR checkpoint; {_accepted()}")
    hparams = hparams_of(ckpt)
    trained_only = checkpoint_info(ckpt).get("weights") == "trained"
    folder = svd if svd is not None else hparams.get("pretrained")
    unet_weights = hparams.get("unet_weights")
    for what, value, how in (("Stable Video Diffusion folder", folder,
                              "given with the svd option" if svd is not None else "recorded as 'pretrained'"),
                             ("released UNet folder", unet_weights, "recorded as 'unet_weights'")):
        if value is not None and not Path(str(value)).expanduser().is_dir():
            raise WeightsError(f"{source} was built on the {what} {value} ({how}), which is not found; pass the SVD "
                               "folder's new location with the svd option (CLI: --option svd=/path)")
    if trained_only and folder is None:
        raise WeightsError(f"{source} holds only the trained UNet weights but names no Stable Video Diffusion folder; "
                           "pass it with the svd option")
    recorded = {k: plain(hparams.get(k)) for k in ("propagation", "conditioning")}
    options = {k: {**dict(recorded[k] or {}), **dict(overrides.get(k) or {})} for k in recorded}
    if folder is None:
        options.update({k: plain(hparams.get(k)) for k in ("variant", "unet", "vae") if hparams.get(k) is not None})
    pipeline = build_pipeline(None if folder is None else str(folder), unet_weights=unet_weights, warn_random=False,
                              **options)
    state = lightning_generator_state(ckpt, use_ema=False)
    # a trained-only checkpoint lacks the frozen parts (rebuilt from the folders), never a trained one
    load_state(pipeline, state, source=source, allow_missing=(lambda key: True) if trained_only else None)
    logger.info("DC-VSR loaded from %s (SVD folder: %s, %s weights)", source, folder,
                "trained" if trained_only else "all")
    return pipeline.eval()


def upscaler_from_pipeline(pipeline: nn.Module, **sampling: Any) -> nn.Module:
    """Check sampling options (names and values, before any work) and wrap the pipeline as an upscaler module
    (:meth:`~zoo.models.dc_vsr.sampling.DCVSRPipeline.as_upscaler`; ``scale`` 4, ``takes_first_frame``).

    Raises:
        ConfigError: unknown names or invalid values.
    """
    return pipeline.as_upscaler(**sampling).eval()
