"""The weight files the zoo can use: :class:`WeightFile`, the shared entries, and where each one lives on disk.

Each family declares its own released files in its ``spec.py`` (``FamilySpec.files``); the files two or more parts of
the zoo use (RAFT-large, AlexNet for LPIPS, VGG19, SPyNet) are declared here. :func:`zoo.hub.weight_files` gathers
both into the catalogue that ``vsrzoo weights list | download NAME | verify`` works on, and every "weights missing"
message names the command that fetches the file (:attr:`WeightFile.download_command`).

Local places (nothing else is searched, nothing is downloaded at run time):

- ``kind='file'``: ``$TORCH_HOME/hub/checkpoints/<original file name>`` (:func:`checkpoints_dir`, torch.hub's own
  folder, where torchvision's and mmediting's loaders look too);
- ``kind='hf_folder'`` and folder-shaped ``'manual'`` entries: ``$TORCH_HOME/hub/vsrzoo/<folder>``
  (:func:`folders_dir`); pass that folder to ``--weights`` or to a recipe's ``pretrained``.

``$TORCH_HOME`` defaults to ``~/.cache/torch`` (torch's rule: ``torch.hub.get_dir()``).

A leaf module: plain frozen dataclasses and :mod:`zoo.errors`; it does not import torch.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zoo.errors import ConfigError

__all__ = ["ALEXNET", "DIFFUSERS_PATTERNS", "RAFT_LARGE", "SHARED_FILES", "SPYNET", "VGG19", "WeightFile",
           "checkpoints_dir", "folders_dir", "hub_dir"]

#: What ``snapshot_download`` fetches of a diffusers repository: configs, tokenizer files and the fp32 safetensors of
#: each component (not the single-file ``.ckpt`` / ``.safetensors`` at the root, nor the fp16 or ``.bin`` copies).
DIFFUSERS_PATTERNS = ("*.json", "*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors")

#: torch.hub's rule for the hash in a file name (``check_hash``): ``name-<hex>.ext`` -> the leading hex digits of
#: the file's SHA-256.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class WeightFile:
    """One released weights file or folder the zoo can load.

    Attributes:
        name: the catalogue name (``vsrzoo weights download <name>``); lowercase, ``[a-z0-9_]``.
        kind: ``'file'`` (one file fetched from ``url``), ``'hf_folder'`` (a Hugging Face repository fetched with
            ``huggingface_hub.snapshot_download``) or ``'manual'`` (no direct link: the user downloads it from
            ``source`` and puts it at :meth:`path`).
        filename: the original file name (``'file'``, file-shaped ``'manual'``) or the local folder name.
        source: the official page or release the file comes from.
        license: the license the authors give for the weights (or for the code, when they give none for the weights).
        used_by: what in the zoo uses it (a family, a metric, a loss).
        url: ``'file'``: the direct download URL.
        repo_id: ``'hf_folder'``: the Hugging Face repository.
        size: exact size in bytes when known (checked by ``download`` and ``verify``), else None.
        approx_size: a rough size for ``list`` when the exact one is not known (e.g. ``'233.1 MB'``).
        sha256: the full SHA-256 hex digest when known, else ``''``.
        hash_prefix: the leading hex digits of the SHA-256 that the file name carries (torchvision, openmmlab), else
            ``''``; must equal the name's (checked).
        folder: ``'manual'`` only: True when the download is a folder (its place is under :func:`folders_dir`).
        required: folders: files that a complete folder holds, relative to it; ``'a|b'`` accepts either.
        allow_patterns: ``'hf_folder'``: the ``snapshot_download`` patterns (default :data:`DIFFUSERS_PATTERNS`).
        gated: ``'hf_folder'``: the repository asks users to accept its conditions (and log in) first.
        note: one more line for ``list`` and ``download`` (how to get a manual file, what to pass where).

    Raises:
        ConfigError: an unknown kind, a missing ``url`` / ``repo_id``, a malformed hash, or a ``hash_prefix`` that is
            not the one in the file name.
    """

    name: str
    kind: Literal["file", "hf_folder", "manual"]
    filename: str
    source: str
    license: str
    used_by: str
    url: str = ""
    repo_id: str = ""
    size: int | None = None
    approx_size: str = ""
    sha256: str = ""
    hash_prefix: str = ""
    folder: bool = False
    required: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = DIFFUSERS_PATTERNS
    gated: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("file", "hf_folder", "manual"):
            raise ConfigError(f"weight file {self.name!r}: kind must be 'file', 'hf_folder' or 'manual', got {self.kind!r}")
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ConfigError(f"weight file name {self.name!r}: use lowercase letters, digits and '_'")
        if self.kind == "file" and not self.url:
            raise ConfigError(f"weight file {self.name!r}: kind 'file' needs a url")
        if self.kind == "hf_folder" and not self.repo_id:
            raise ConfigError(f"weight file {self.name!r}: kind 'hf_folder' needs a repo_id")
        for label, digest in (("sha256", self.sha256), ("hash_prefix", self.hash_prefix)):
            if digest and not re.fullmatch(r"[0-9a-f]+", digest):
                raise ConfigError(f"weight file {self.name!r}: {label} must be lowercase hex, got {digest!r}")
        if self.sha256 and len(self.sha256) != 64:
            raise ConfigError(f"weight file {self.name!r}: sha256 must have 64 hex digits")
        in_name = _HASH_IN_NAME.search(self.filename)
        if self.hash_prefix and (in_name is None or in_name.group(1) != self.hash_prefix):
            raise ConfigError(f"weight file {self.name!r}: hash_prefix {self.hash_prefix!r} is not the hash in "
                              f"{self.filename!r}")
        if self.sha256 and self.hash_prefix and not self.sha256.startswith(self.hash_prefix):
            raise ConfigError(f"weight file {self.name!r}: sha256 does not start with hash_prefix")

    @property
    def is_folder(self) -> bool:
        """True for ``'hf_folder'`` entries and folder-shaped ``'manual'`` ones."""
        return self.kind == "hf_folder" or self.folder

    @property
    def expected_hash(self) -> str:
        """What the file's SHA-256 must start with: the full digest, else the name's prefix, else ``''``."""
        return self.sha256 or self.hash_prefix

    @property
    def download_command(self) -> str:
        """The command that fetches it (for a manual entry: prints where to get it and where to put it)."""
        return f"vsrzoo weights download {self.name}"

    def path(self, root: str | Path | None = None) -> Path:
        """Where the zoo expects it: ``root / filename``; ``root`` defaults to :func:`checkpoints_dir` for files and
        :func:`folders_dir` for folders."""
        if root is None:
            root = folders_dir() if self.is_folder else checkpoints_dir()
        return Path(root).expanduser() / self.filename

    def missing_required(self, folder: Path) -> list[str]:
        """The :attr:`required` entries of which no alternative exists under ``folder``."""
        return [item for item in self.required
                if not any((folder / option).is_file() for option in item.split("|"))]


def hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch (``vsrzoo weights`` stays quick).

    When torch is loaded its own answer is used (it honours ``torch.hub.set_dir``); otherwise torch's rule:
    ``$TORCH_HOME/hub``, with ``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``.
    """
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where ``'file'`` entries live (torch.hub's, torchvision's and mmediting's)."""
    return hub_dir() / "checkpoints"


def folders_dir() -> Path:
    """``$TORCH_HOME/hub/vsrzoo``: where folder entries (diffusers repositories, released folders) live."""
    return hub_dir() / "vsrzoo"


_TORCHVISION = "https://download.pytorch.org/models/"

RAFT_LARGE = WeightFile(
    name="raft_large", kind="file", filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    url=_TORCHVISION + "raft_large_C_T_SKHT_V2-ff5fadd5.pth", hash_prefix="ff5fadd5", approx_size="20.1 MB",
    source="torchvision Raft_Large_Weights.C_T_SKHT_V2 (https://pytorch.org/vision/stable/models/raft.html)",
    license="BSD-3-Clause (torchvision)", used_by="flow='raft' of the temporal metrics (E*warp, tOF, tLPIPS)")

ALEXNET = WeightFile(
    name="alexnet", kind="file", filename="alexnet-owt-7be5be79.pth",
    url=_TORCHVISION + "alexnet-owt-7be5be79.pth", hash_prefix="7be5be79", approx_size="233.1 MB",
    source="torchvision AlexNet_Weights.IMAGENET1K_V1 (https://pytorch.org/vision/stable/models/alexnet.html)",
    license="BSD-3-Clause (torchvision)", used_by="LPIPS / tLPIPS metrics, VideoGigaGAN's LPIPS loss",
    note="LPIPS's linear layers (v0.1 alex.pth) ship inside the lpips package: nothing else to fetch")

VGG19 = WeightFile(
    name="vgg19", kind="file", filename="vgg19-dcbb9e9d.pth",
    url=_TORCHVISION + "vgg19-dcbb9e9d.pth", hash_prefix="dcbb9e9d", approx_size="548.1 MB",
    source="torchvision VGG19_Weights.IMAGENET1K_V1 (https://pytorch.org/vision/stable/models/vgg.html)",
    license="BSD-3-Clause (torchvision)", used_by="perceptual loss (RealBasicVSR stage 2)")

SPYNET = WeightFile(
    name="spynet", kind="file", filename="spynet_20210409-c6c1bd09.pth",
    url="https://download.openmmlab.com/mmediting/restorers/basicvsr/spynet_20210409-c6c1bd09.pth",
    hash_prefix="c6c1bd09",
    source="mmediting BasicVSR configs (https://github.com/open-mmlab/mmagic/tree/main/configs/basicvsr)",
    license="Apache-2.0 (mmediting)", used_by="spynet_pretrained of RealBasicVSR / VideoGigaGAN training",
    note="pass its path as the net's spynet_pretrained; released checkpoints already hold SPyNet")

#: The shared entries (each family's own are in its ``spec.py``).
SHARED_FILES: tuple[WeightFile, ...] = (RAFT_LARGE, ALEXNET, VGG19, SPYNET)
