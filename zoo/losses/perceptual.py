"""VGG19 perceptual loss (Johnson et al., ECCV 2016), in the layer convention of mmedit's ``PerceptualLoss``."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from einops import rearrange
from torch import nn

from zoo.catalogue import VGG19
from zoo.errors import WeightsError

#: File name torchvision uses for its ImageNet VGG19 weights (``VGG19_Weights.IMAGENET1K_V1``).
VGG19_FILE = VGG19.filename  # vgg19-dcbb9e9d.pth
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_weights_path() -> Path:
    """Where the VGG19 weights are looked for: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


class PerceptualLoss(nn.Module):
    """L1 distance between VGG19 feature maps of ``sr`` and ``gt``, summed over layers with weights.

    Layers are indices into ``torchvision.models.vgg19().features`` and the feature is the output of that
    module, i.e. *before* the following ReLU for conv indices. RealBasicVSR's stage-2 recipe uses
    ``{'2': 0.1, '7': 0.1, '16': 1.0, '25': 1.0, '34': 1.0}`` (conv1_2, conv2_2, conv3_4, conv4_4, conv5_4), inputs in
    [0, 1] normalised with the ImageNet mean/std (mmedit ``PerceptualLoss(vgg_type='vgg19', norm_img=False,
    use_input_norm=True)``; official config ``configs/realbasicvsr_x4.py``).

    Args:
        layer_weights: ``{layer index as str: weight}``.
        weights: path to a torchvision VGG19 state dict; ``None`` means :func:`vgg19_weights_path`;
            ``'random'`` builds the network with random weights (tests only: the loss is then meaningless).

    Raises:
        WeightsError: when the weights file is missing (the message names the file to provide) or does not fit.
    """

    def __init__(self, *, layer_weights: dict[str, float] | None = None, weights: str | None = None) -> None:
        super().__init__()
        self.layer_weights = {str(k): float(v) for k, v in (layer_weights or {"2": 0.1, "7": 0.1, "16": 1.0, "25": 1.0, "34": 1.0}).items()}
        last = max(int(k) for k in self.layer_weights)
        vgg = torchvision.models.vgg19(weights=None)
        if weights != "random":
            path = Path(weights) if weights else vgg19_weights_path()
            if not path.is_file():
                raise WeightsError(
                    f"PerceptualLoss needs the ImageNet VGG19 weights: put torchvision's '{VGG19_FILE}' at {path} "
                    f"(`{VGG19.download_command}` fetches it; or set TORCH_HOME), or set the perceptual loss weight to "
                    f"0. Nothing is downloaded at run time."
                )
            try:
                vgg.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as err:  # noqa: BLE001 - any failure here is a wrong file
                raise WeightsError(f"{path} is not a torchvision VGG19 state dict: {err}") from err
        self.features = vgg.features[: last + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """Keep the frozen VGG in eval mode whatever the parent's mode."""
        super().train(mode)
        self.features.eval()
        return self

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = (x - self.mean) / self.std
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in self.layer_weights:
                out[name] = x
        return out

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Scalar loss for ``sr``, ``gt`` of shape (b, t, 3, h, w) or (n, 3, h, w), RGB in [0, 1]."""
        if sr.ndim == 5:
            sr = rearrange(sr, "b t c h w -> (b t) c h w")
            gt = rearrange(gt, "b t c h w -> (b t) c h w")
        f_sr = self._features(sr)
        with torch.no_grad():
            f_gt = self._features(gt.detach())
        return sum(w * F.l1_loss(f_sr[k], f_gt[k]) for k, w in self.layer_weights.items())
