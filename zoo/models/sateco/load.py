"""SATeCo weights: a local Stable Diffusion 2.x-base folder for the frozen base, this project's checkpoints for the rest.

No official SATeCo code or weights exist, so what loads is:

- the **base**: a local diffusers folder in the ``stabilityai/stable-diffusion-2-1-base`` layout (``unet/``, ``vae/``,
  ``scheduler/``, ``text_encoder/``, ``tokenizer/``; nothing is downloaded), checked to be a Stable Diffusion base
  (``UNet2DConditionModel`` with as many input channels as the ``AutoencoderKL``'s latent channels, scaled-linear betas
  0.00085 -> 0.012 over 1000 steps) so that a wrong folder fails with one line naming the file;
- a **vsrzoo checkpoint** of :class:`~zoo.models.sateco.system.SATeCo` (any stage): it holds the trained modules
  (upscaler, latent encoder, adapters, refiner) and names the base folder it was trained on (``hyper_parameters
  ['pretrained']``; the ``pretrained`` option points elsewhere);
- nothing: random networks (SD 2.1-base sizes or a ``variant``), with a loud warning.

:func:`build_pipeline` builds :class:`~zoo.models.sateco.sampling.SATeCoPipeline` from a base folder (or randomly)
and module options; :func:`load_sateco_pipeline` adds checkpoints; :func:`upscaler_from_pipeline` checks sampling
options and wraps the pipeline as an upscaler module. Generic folder handling is :mod:`zoo.diffusion.folders`.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.diffusion.bases import SD21_BASE_UNET, SD21_BASE_VAE, is_sd_base_schedule
from zoo.diffusion.folders import load_clip_text, load_model, load_scheduler, read_json, require_files
from zoo.diffusion.tiles import check_window
from zoo.errors import ConfigError, WeightsError
from zoo.models.sateco.spec import SD21_BASE, SPEC
from zoo.weights import checkpoint_info, hparams_of, is_lightning_checkpoint, lightning_generator_state, load_state, \
    plain, read_checkpoint, refuse_recorded

__all__ = ["BASE_FILES", "MODULE_OPTIONS", "RANDOM_INIT_WARNING", "build_pipeline", "check_base_folder",
           "load_sateco_pipeline", "upscaler_from_pipeline"]

logger = logging.getLogger(__name__)

#: Files a Stable Diffusion 2.x-base folder must have (the text encoder and tokenizer are checked when loaded).
BASE_FILES = ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json")
#: Options sizing the trained modules (the system's hyper-parameters of the same names).
MODULE_OPTIONS = ("upscaler", "latent_encoder", "adapters", "vae_adapters", "refiner")

RANDOM_INIT_WARNING = (
    "SATeCo: no Stable Diffusion folder given, the frozen UNet and VAE are RANDOMLY INITIALISED. SATeCo adapts a "
    "pretrained Stable Diffusion 2.x-base; without it the output is meaningless (smoke runs and timing only). Pass a "
    "local stable-diffusion-2-1-base folder as 'pretrained'.")


def check_base_folder(folder: str | Path) -> Path:
    """Check that ``folder`` is a local Stable Diffusion 2.x-base diffusers folder.

    Raises:
        WeightsError: a missing folder or file (named), a UNet or VAE of another class, or a scheduler whose betas
            are not Stable Diffusion's (0.00085 -> 0.012 scaled linear, 1000 steps).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"SATeCo pretrained folder not found: {folder} (a local stable-diffusion-2-1-base copy: "
                           f"unet/, vae/, scheduler/, text_encoder/, tokenizer/; `{SD21_BASE.download_command}` "
                           f"fetches it to {SD21_BASE.path()})")
    require_files(folder, BASE_FILES, what="SATeCo pretrained Stable Diffusion folder")
    for sub, cls in (("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL")):
        name = read_json(folder / sub / "config.json").get("_class_name")
        if name != cls:
            raise WeightsError(f"{folder / sub / 'config.json'}: class {name!r}, but SATeCo needs a Stable Diffusion "
                               f"2.x-base {cls}")
    schedule = read_json(folder / "scheduler" / "scheduler_config.json")
    if not is_sd_base_schedule(schedule):
        raise WeightsError(f"{folder / 'scheduler' / 'scheduler_config.json'}: betas {schedule.get('beta_start')} -> "
                           f"{schedule.get('beta_end')} ({schedule.get('beta_schedule')}), but Stable Diffusion "
                           "2.x-base uses 0.00085 -> 0.012 (scaled_linear) over 1000 steps")
    return folder


def _variant(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    return SPEC.variant(name)


def build_pipeline(pretrained: str | Path | None, *, variant: str | None = None, unet: Mapping | None = None,
                   vae: Mapping | None = None, load_text_encoder: bool = True, warn_random: bool = True,
                   **modules: Any) -> nn.Module:
    """:class:`~zoo.models.sateco.sampling.SATeCoPipeline` on a frozen base (eval mode, CPU, base ``requires_grad``
    off).

    Args:
        pretrained: a local Stable Diffusion 2.x-base folder (:func:`check_base_folder`), or None: random UNet and
            VAE (SD 2.1-base sizes, a ``variant``'s, or ``unet`` / ``vae``), no text encoder, loud warning.
        variant: a name of ``spec.VARIANTS`` sizing the random base and the trained modules (explicit options win).
        unet, vae: random base only: ``UNet2DConditionModel`` / ``AutoencoderKL`` options over SD 2.1-base's.
        load_text_encoder: load ``text_encoder/`` and ``tokenizer/`` from ``pretrained`` (else zero text tokens).
        warn_random: warn about a random base (off when a checkpoint is about to supply its weights).
        **modules: :data:`MODULE_OPTIONS` (``upscaler``, ``latent_encoder``, ``adapters`` dicts, ``vae_adapters``
            bool, ``refiner`` dict).

    Raises:
        ConfigError: unknown module options, a variant with ``pretrained``, options that do not fit.
        WeightsError: an unusable ``pretrained`` folder (the file is named).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from zoo.models.sateco.sampling import SATeCoPipeline

    unknown = sorted(set(modules) - set(MODULE_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown SATeCo module options {unknown}; known: {list(MODULE_OPTIONS)}")
    sizes = _variant(variant)
    options = {k: plain(modules[k]) if modules.get(k) is not None else sizes.get(k) for k in MODULE_OPTIONS}
    options = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in options.items() if v is not None}
    text_encoder = tokenizer = scheduler = None
    if pretrained is None:
        if warn_random:
            warnings.warn(RANDOM_INIT_WARNING, stacklevel=3)
            logger.warning(RANDOM_INIT_WARNING)
        base_unet = UNet2DConditionModel(**{**SD21_BASE_UNET, **dict(sizes.get("unet") or {}), **dict(unet or {})})
        base_vae = AutoencoderKL(**{**SD21_BASE_VAE, **dict(sizes.get("vae") or {}), **dict(vae or {})})
    else:
        if variant is not None or unet or vae:
            raise ConfigError(f"the Stable Diffusion folder {pretrained} fixes the base; variant/unet/vae size random "
                              "bases only")
        folder = check_base_folder(pretrained)
        base_unet = load_model(UNet2DConditionModel, folder, "unet", what="SATeCo base UNet")
        base_vae = load_model(AutoencoderKL, folder, "vae", what="SATeCo base VAE")
        scheduler = load_scheduler(folder, "scheduler")
        if load_text_encoder:
            text_encoder, tokenizer = load_clip_text(folder)
    for net in (base_unet, base_vae, text_encoder):
        if net is not None:
            net.requires_grad_(False)
    pipeline = SATeCoPipeline(unet=base_unet, vae=base_vae, scheduler=scheduler, text_encoder=text_encoder,
                              tokenizer=tokenizer, **options)
    return pipeline.to(torch.device("cpu")).eval()


#: Loader options of :func:`load_sateco_pipeline` besides the module options.
_LOADER_OPTIONS = ("variant", "unet", "vae", "load_text_encoder", "pretrained", "refiner_weight") + MODULE_OPTIONS
#: What a checkpoint records (its architecture): not accepted as overrides for it.
_RECORDED = ("variant", "unet", "vae", "load_text_encoder") + MODULE_OPTIONS
_BASE_PREFIXES = ("unet.", "vae.", "text_encoder.")
_PREFIXES = ("net_g.upscaler.", "net_g.latent_encoder.", "net_g.unet_adapters.", "net_g.refiner.")


def _accepted() -> str:
    return ("accepted: a vsrzoo checkpoint (.ckpt) of zoo.models.sateco.system.SATeCo (any stage), a local Stable "
            "Diffusion 2.x-base folder (unet/, vae/, scheduler/, text_encoder/, tokenizer/; SATeCo modules untrained), "
            "or random weights")


def load_sateco_pipeline(path: str | Path | None, **overrides: Any) -> nn.Module:
    """The SATeCo pipeline from a vsrzoo checkpoint, a Stable Diffusion folder (untrained modules) or random weights.

    Args:
        path: a ``.ckpt`` of :class:`~zoo.models.sateco.system.SATeCo` (its ``hyper_parameters`` rebuild the
            architecture and name the base folder), a Stable Diffusion 2.x-base folder, or None (random, loud).
        **overrides: ``pretrained`` (checkpoints: where their base folder is now), ``refiner_weight`` (the refiner's
            w, e.g. 0 or 1 for the ablation); folders and random weights also take :func:`build_pipeline`'s options.

    Returns:
        :class:`~zoo.models.sateco.sampling.SATeCoPipeline` in eval mode on the CPU.

    Raises:
        WeightsError: missing path, a file that is not such a checkpoint (the accepted forms are listed), a checkpoint
            whose base folder is gone, weights that do not fit.
        ConfigError: unknown or recorded options.
    """
    unknown = sorted(set(overrides) - set(_LOADER_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown SATeCo loader option(s) {unknown}; loader options: {list(_LOADER_OPTIONS)} "
                          "(sampling options go to upscaler_from_pipeline)")
    refiner_weight = overrides.pop("refiner_weight", None)
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise WeightsError(f"SATeCo weights not found: {path}; {_accepted()}{SPEC.download_hint()}")
    if path is not None and path.is_file():
        pipeline = _from_checkpoint(path, **overrides)
    else:
        if "pretrained" in overrides:
            raise ConfigError("the 'pretrained' option applies to a vsrzoo checkpoint; pass the folder itself instead")
        if path is not None:
            warnings.warn(f"SATeCo: {path} is a Stable Diffusion folder, the SATeCo modules (upscaler, adapters, "
                          "refiner) are UNTRAINED: the adapters pass the base through and the upscaler is random; "
                          "train them (lightning fit --config zoo/sateco.yaml) and pass the checkpoint", stacklevel=2)
        pipeline = build_pipeline(path, **overrides)
    if refiner_weight is not None:
        if isinstance(refiner_weight, bool) or not isinstance(refiner_weight, (int, float)) or not (
                0.0 <= refiner_weight <= 1.0):
            raise ConfigError(f"refiner_weight must be in [0, 1]; got {refiner_weight!r}")
        pipeline.refiner.weight = float(refiner_weight)
    return pipeline


def _from_checkpoint(path: Path, *, pretrained: object = None, **overrides: Any) -> nn.Module:
    source = str(path)
    refuse_recorded(source, overrides, _RECORDED)
    ckpt = read_checkpoint(path, family="sateco")
    if not is_lightning_checkpoint(ckpt, _PREFIXES):
        raise WeightsError(f"{source} is not a SATeCo checkpoint; {_accepted()}")
    hparams = hparams_of(ckpt)
    trained_only = checkpoint_info(ckpt).get("weights") == "trained"
    folder = pretrained if pretrained is not None else hparams.get("pretrained")
    if folder is not None and not Path(str(folder)).expanduser().is_dir():
        how = "given with the pretrained option" if pretrained is not None else "recorded as the system's 'pretrained'"
        raise WeightsError(f"{source} was trained on the Stable Diffusion folder {folder} ({how}), which is not found; "
                           "pass its new location with the 'pretrained' option (CLI: --option pretrained=/path)")
    if trained_only and folder is None:
        raise WeightsError(f"{source} holds only the trained modules but names no Stable Diffusion folder; pass it with "
                           "the 'pretrained' option")
    options = {k: plain(hparams.get(k)) for k in MODULE_OPTIONS if hparams.get(k) is not None}
    if folder is None:
        options.update({k: plain(hparams.get(k)) for k in ("variant", "unet", "vae") if hparams.get(k) is not None})
    pipeline = build_pipeline(None if folder is None else str(folder), warn_random=False,
                              load_text_encoder=bool(hparams.get("load_text_encoder", True)), **options)
    state = lightning_generator_state(ckpt, use_ema=False)
    # a trained-only checkpoint lacks the frozen base (rebuilt from the folder), never a trained module
    load_state(pipeline, state, source=source,
               allow_missing=(lambda key: key.startswith(_BASE_PREFIXES)) if trained_only else None)
    logger.info("SATeCo loaded from %s (base: %s, %s weights, stage %s)", source, folder,
                "trained" if trained_only else "all", hparams.get("stage"))
    return pipeline.eval()


def upscaler_from_pipeline(pipeline: nn.Module, **sampling: Any) -> nn.Module:
    """Check sampling options (names and values, before any work) and wrap the pipeline as an upscaler module.

    Args:
        pipeline: :class:`~zoo.models.sateco.sampling.SATeCoPipeline`.
        **sampling: fields of :class:`~zoo.models.sateco.sampling.SamplingOptions`.

    Returns:
        :class:`~zoo.models.sateco.sampling.SATeCoUpscaler` in eval mode (``scale`` 4, ``takes_first_frame``).

    Raises:
        ConfigError: unknown names or invalid values.
    """
    upscaler = pipeline.as_upscaler(**sampling)
    options = upscaler.options
    steps = options.num_inference_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"num_inference_steps must be a positive integer; got {steps!r}")
    pipeline._first_step(steps, options.strength)
    if isinstance(options.guidance_scale, bool) or not isinstance(options.guidance_scale, (int, float)):
        raise ConfigError(f"guidance_scale must be a number; got {options.guidance_scale!r}")
    check_window(options.window, options.window_overlap, name="window")
    check_window(options.tile, options.tile_overlap, name="tile")
    chunk = options.vae_chunk
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"vae_chunk must be a positive integer or None; got {chunk!r}")
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(options, name), str):
            raise ConfigError(f"{name} must be a string; got {getattr(options, name)!r}")
    return upscaler.eval()
