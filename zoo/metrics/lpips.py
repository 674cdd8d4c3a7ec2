"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

Uses the ``lpips`` package (richzhang/PerceptualSimilarity, ``lpips/lpips.py``), version 0.1, AlexNet trunk. The
linear calibration layers (``lpips/weights/v0.1/alex.pth``) ship inside the pip package; the AlexNet trunk is
torchvision's ImageNet AlexNet, which ``lpips`` would download through ``torch.hub``. Here it is read only from
``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` (the file torchvision's ``AlexNet_Weights.IMAGENET1K_V1``
downloads); nothing is downloaded. When the file is absent the metric reports ``is_available = False`` and warns
once per process, naming the file to provide.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from zoo.catalogue import ALEXNET
from zoo.errors import InputError, WeightsError
from zoo.metrics.image import check_video

#: File name of torchvision's ImageNet AlexNet weights (``AlexNet_Weights.IMAGENET1K_V1``).
ALEXNET_FILE = ALEXNET.filename  # alexnet-owt-7be5be79.pth
_warned_missing = False
_PAIRS_PER_BATCH = 8


def alexnet_weights_path() -> Path:
    """Where the AlexNet trunk weights are looked for: ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _build_lpips_random_trunk() -> nn.Module:
    """``lpips.LPIPS(net='alex')`` with its packaged linear layers and a random (not downloaded) AlexNet trunk."""
    import lpips

    with warnings.catch_warnings():
        # lpips calls torchvision.models.alexnet(pretrained=False): a deprecation warning only, nothing downloads.
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)


def _load_alexnet_trunk(model: nn.Module, path: Path) -> None:
    """Copy torchvision AlexNet ``features.<i>.*`` weights into lpips' ``net.slice<k>.<i>.*`` modules (same indices)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here is an unreadable file
        raise WeightsError(f"cannot read AlexNet weights {path}: {err}") from err
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a torchvision AlexNet state dict (got {type(state).__name__})")
    trunk = {}
    for key, target in model.net.state_dict().items():
        _, index, param = key.split(".")  # e.g. 'slice2.3.weight'
        source_key = f"features.{index}.{param}"
        if source_key not in state or state[source_key].shape != target.shape:
            raise WeightsError(
                f"{path} is not torchvision's AlexNet state dict: key '{source_key}' "
                f"{'missing' if source_key not in state else 'has shape ' + str(tuple(state[source_key].shape))}"
            )
        trunk[key] = state[source_key]
    model.net.load_state_dict(trunk, strict=True)


class LPIPSMetric(nn.Module):
    """LPIPS distance between ``sr`` and ``gt`` video frames (AlexNet, v0.1), averaged over frames.

    Args:
        net: an already built ``lpips.LPIPS`` module to use as is (tests pass ``lpips.LPIPS(pnet_rand=True)``;
            the values are then meaningless, only shapes are). When given, ``weights_path`` is ignored.
        weights_path: torchvision AlexNet state dict; ``None`` means :func:`alexnet_weights_path`.

    ``is_available`` is False when the AlexNet file is missing; then :meth:`forward` raises :class:`WeightsError`
    and a ``UserWarning`` naming the file is issued once per process.
    """

    def __init__(self, *, net: nn.Module | None = None, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.weights_path = Path(weights_path) if weights_path is not None else alexnet_weights_path()
        self.net: nn.Module | None = None
        if net is not None:
            self.net = net
        elif self.weights_path.is_file():
            model = _build_lpips_random_trunk()
            _load_alexnet_trunk(model, self.weights_path)
            self.net = model
        else:
            _warn_missing(self.weights_path)
        if self.net is not None:
            self.net.eval()
            for p in self.net.parameters():
                p.requires_grad_(False)

    @property
    def is_available(self) -> bool:
        """True when the AlexNet trunk was loaded (or a net was given)."""
        return self.net is not None

    def train(self, mode: bool = True) -> "LPIPSMetric":
        """Keep the metric network in eval mode (dropout off) whatever the parent's mode."""
        super().train(mode)
        if self.net is not None:
            self.net.eval()
        return self

    @torch.no_grad()
    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of image pairs.

        Args:
            x: ``(n, 3, h, w)`` RGB float in [0, 1] (mapped to [-1, 1] as lpips expects).
            y: same shape as ``x``.

        Returns:
            ``(n,)`` float32 distances (0 for identical images; about 0.1-0.5 for typical SR outputs).
        """
        if self.net is None:
            raise WeightsError(f"LPIPS is unavailable: put torchvision's '{ALEXNET_FILE}' at {self.weights_path}")
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS needs two (n, 3, h, w) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        param = next(self.net.parameters())
        dists = []
        for start in range(0, x.shape[0], _PAIRS_PER_BATCH):  # bounded activation memory for long clips
            a = x[start : start + _PAIRS_PER_BATCH].to(device=param.device, dtype=param.dtype)
            b = y[start : start + _PAIRS_PER_BATCH].to(device=param.device, dtype=param.dtype)
            dists.append(self.net(a * 2 - 1, b * 2 - 1).flatten())
        return torch.cat(dists)

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """LPIPS per clip.

        Args:
            sr: ``(b, t, 3, h, w)`` float in [0, 1].
            gt: same shape as ``sr``.

        Returns:
            ``(b,)`` mean over frames of the per-frame LPIPS, float32 on the metric's device.

        Raises:
            WeightsError: the AlexNet weights are missing (``is_available`` is False).
            InputError: bad shapes.
        """
        check_video(sr, "sr")
        check_video(gt, "gt")
        if sr.shape != gt.shape:
            raise InputError(f"sr and gt must have the same shape, got {tuple(sr.shape)} and {tuple(gt.shape)}")
        batch = sr.shape[0]
        dist = self.pairwise(rearrange(sr, "b t c h w -> (b t) c h w"), rearrange(gt, "b t c h w -> (b t) c h w"))
        return rearrange(dist, "(b t) -> b t", b=batch).mean(dim=1)


def _warn_missing(path: Path) -> None:
    global _warned_missing
    if not _warned_missing:
        _warned_missing = True
        warnings.warn(
            f"LPIPS (and tLPIPS) disabled: the AlexNet weights file is missing. Provide torchvision's "
            f"'{ALEXNET_FILE}' at {path} (`{ALEXNET.download_command}` fetches it; set TORCH_HOME to use another "
            f"folder). Nothing is downloaded at run time.",
            UserWarning,
            stacklevel=3,
        )
