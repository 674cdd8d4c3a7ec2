"""Local diffusers / transformers folders: load components without touching the network, say which file is missing.

Nothing is downloaded: every loader calls ``from_pretrained(..., local_files_only=True)`` on a local folder (a
``huggingface_hub.snapshot_download`` of ``stabilityai/stable-diffusion-x4-upscaler``,
``stabilityai/stable-diffusion-2-1-base``, ``stabilityai/stable-video-diffusion-img2vid``, ...), after checking that
the files it needs are there, so that a wrong or incomplete folder fails with one line naming the missing file
instead of a hub error.

- :func:`detect_folder_kind`: which of a family's accepted layouts a folder is (by marker files).
- :func:`require_files`: the named files exist, or :class:`~zoo.errors.WeightsError` naming the first missing one.
- :func:`load_model`: a diffusers model class from ``folder/subfolder`` (``config.json`` + weights).
- :func:`load_scheduler`: a diffusers scheduler from ``folder/subfolder/scheduler_config.json`` (class from its
  ``_class_name``, or the class asked for), or a default configuration when the folder has none.
- :func:`load_clip_text`: a transformers ``CLIPTextModel`` and ``CLIPTokenizer`` from ``text_encoder/`` and
  ``tokenizer/``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError

__all__ = ["WEIGHT_FILES", "detect_folder_kind", "load_clip_text", "load_model", "load_scheduler", "read_json",
           "require_files"]

#: Weight file names diffusers writes (safetensors first), optionally with a variant (``.fp16``) or sharded.
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")


def read_json(path: str | Path) -> dict:
    """Read a JSON config.

    Raises:
        WeightsError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"config file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read config {path}: {exc}") from exc


def require_files(folder: Path, names: Sequence[str], *, what: str) -> None:
    """Check that ``folder/name`` exists for every name.

    Raises:
        WeightsError: ``"<what>: <folder/name> not found"`` for the first missing one.
    """
    for name in names:
        if not (folder / name).exists():
            raise WeightsError(f"{what}: {folder / name} not found")


def detect_folder_kind(folder: str | Path, kinds: Mapping[str, Sequence[str]], *, family: str) -> str:
    """The first kind whose marker files all exist in ``folder``.

    Args:
        folder: the weights folder.
        kinds: ``{kind: (relative marker paths, ...)}`` in priority order, e.g.
            ``{'released': ('unet/unet_video.bin',), 'sd_x4': ('unet/config.json',)}``.
        family: for the message.

    Raises:
        WeightsError: a missing folder, or one of no known kind (what was looked for is listed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{family} weights folder not found: {folder}")
    for kind, markers in kinds.items():
        if all((folder / marker).exists() for marker in markers):
            return kind
    wanted = "; ".join(f"{kind}: {', '.join(markers)}" for kind, markers in kinds.items())
    raise WeightsError(f"{folder}: no known {family} weights layout (looked for {wanted})")


def _weights_present(path: Path) -> bool:
    return any((path / name).is_file() for name in WEIGHT_FILES)


def load_model(cls: type, folder: str | Path, subfolder: str, *, what: str | None = None, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder, subfolder=subfolder, local_files_only=True, **kwargs)`` with clear errors.

    Args:
        cls: a diffusers ``ModelMixin`` or transformers ``PreTrainedModel`` class.
        folder: the pipeline folder.
        subfolder: e.g. ``'unet'``, ``'vae'``.
        what: component name for messages (default: ``subfolder``).
        **kwargs: more ``from_pretrained`` options (``torch_dtype``, ``variant``).

    Raises:
        WeightsError: the sub-folder, its ``config.json`` or its weights file missing (the path is named), or a
            folder ``from_pretrained`` refuses.
    """
    path = Path(folder) / subfolder
    what = what or subfolder
    if not path.is_dir():
        raise WeightsError(f"{what}: {path} not found")
    require_files(path, ("config.json",), what=what)
    if not _weights_present(path):
        raise WeightsError(f"{what}: no weights file in {path} (expected {WEIGHT_FILES[0]} or "
                           f"{WEIGHT_FILES[1]})")
    try:
        return cls.from_pretrained(Path(folder), subfolder=subfolder, local_files_only=True, **kwargs)
    except (OSError, ValueError, EnvironmentError, KeyError) as exc:
        raise WeightsError(f"cannot load {what} ({cls.__name__}) from {path}: {str(exc).splitlines()[0]}") from exc


def load_scheduler(folder: str | Path | None, subfolder: str = "scheduler", *, cls: type | None = None,
                   default: Mapping[str, Any] | None = None) -> Any:
    """A diffusers scheduler from ``folder/subfolder/scheduler_config.json``.

    Args:
        folder: the pipeline folder (None: use ``default``).
        subfolder: ``'scheduler'``, ``'low_res_scheduler'``, ...
        cls: the scheduler class to build (its ``from_config``); default: the config's ``_class_name``.
        default: configuration used when the folder has no such file (None: the file is required).

    Raises:
        WeightsError: the file missing without a default, or an unknown ``_class_name``.
    """
    import diffusers
    from diffusers import SchedulerMixin

    path = Path(folder) / subfolder / "scheduler_config.json" if folder is not None else None
    if path is not None and path.is_file():
        config = read_json(path)
    elif default is not None:
        config = dict(default)
    else:
        raise WeightsError(f"{subfolder}: {path} not found")
    if cls is None:
        name = str(config.get("_class_name"))
        cls = getattr(diffusers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
            raise WeightsError(f"{path or subfolder}: unknown scheduler class {name!r}")
    return cls.from_config(config)


def load_clip_text(folder: str | Path, *, text_encoder: str = "text_encoder", tokenizer: str = "tokenizer"
                   ) -> tuple[Any, Any]:
    """A transformers ``CLIPTextModel`` (eval mode) and ``CLIPTokenizer`` from a pipeline folder.

    Raises:
        WeightsError: a missing sub-folder or file (named), or files transformers refuses.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    for sub in (text_encoder, tokenizer):
        if not (folder / sub).is_dir():
            raise WeightsError(f"text encoder: {folder / sub} not found")
    encoder = load_model(CLIPTextModel, folder, text_encoder, what="text encoder")
    try:
        tokenizer_obj = CLIPTokenizer.from_pretrained(folder / tokenizer, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot load the CLIP tokenizer from {folder / tokenizer}: {exc}") from exc
    return encoder.eval(), tokenizer_obj
