"""Optical flow for feature alignment: SPyNet and backward warping.

- :func:`flow_warp` samples a tensor at positions displaced by a per-pixel flow (bilinear ``grid_sample``).
- :class:`SPyNet` is the flow estimator of BasicVSR / RealBasicVSR (Ranjan & Black, "Optical Flow Estimation
  using a Spatial Pyramid Network", CVPR 2017), in the variant of mmediting 0.x
  ``mmedit/models/backbones/sr_backbones/basicvsr_net.py`` (six pyramid levels, no batch norm, ImageNet
  input normalisation, inputs resized to a multiple of 32 internally).

Flow convention used everywhere in vsrzoo: ``flow`` is ``(n, 2, h, w)`` in pixels, channel 0 the horizontal
(x, to the right) and channel 1 the vertical (y, downwards) displacement. ``flow_warp(supp, flow)`` with
``flow = SPyNet()(ref, supp)`` brings ``supp`` into alignment with ``ref``:
``warped[p] = supp[p + flow[p]]``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from zoo.catalogue import SPYNET
from zoo.errors import InputError, WeightsError
from zoo.weights import KeyMap

#: ImageNet mean and standard deviation (RGB) used to normalise SPyNet's inputs (official SPyNet weights).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: Number of pyramid levels; the coarsest level is the input / 2**5, hence sizes must be multiples of 32.
_NUM_LEVELS = 6
_SIZE_MULTIPLE = 2 ** (_NUM_LEVELS - 1)
#: Channels of the five 7x7 convolutions of each level (input: ref RGB 3 + warped supp RGB 3 + flow 2).
_LEVEL_CHANNELS = (8, 32, 64, 32, 16, 2)


def flow_warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    interpolation: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """Backward-warp ``x`` with a dense flow: ``out[:, :, y, x] = x[:, :, y + flow_y, x + flow_x]``.

    Sampling positions are pixel coordinates normalised as ``2 * pos / max(size - 1, 1) - 1`` for
    ``torch.nn.functional.grid_sample`` (the align_corners=True convention, as in mmediting 0.x
    ``mmedit/models/common/flow_warp.py``).

    Args:
        x: image or features ``(n, c, h, w)``, float.
        flow: displacement ``(n, 2, h, w)`` in pixels, channel 0 = x (right), channel 1 = y (down).
        interpolation: ``'bilinear'`` or ``'nearest'``.
        padding_mode: value outside the frame: ``'zeros'``, ``'border'`` or ``'reflection'``.
        align_corners: passed to ``grid_sample``.

    Returns:
        Warped tensor ``(n, c, h, w)``, same dtype as ``x``.

    Raises:
        InputError: if ``flow`` is not ``(n, 2, h, w)`` with the batch and spatial size of ``x``.
    """
    if x.ndim != 4 or flow.ndim != 4:
        raise InputError(f"flow_warp expects x (n, c, h, w) and flow (n, 2, h, w); got {tuple(x.shape)} and "
                         f"{tuple(flow.shape)}")
    n, _, h, w = x.shape
    if tuple(flow.shape) != (n, 2, h, w):
        raise InputError(f"flow must be (n, 2, h, w) = {(n, 2, h, w)} to match x {tuple(x.shape)}; "
                         f"got {tuple(flow.shape)}")
    grid_y, grid_x = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    pos_x = grid_x + flow[:, 0]
    pos_y = grid_y + flow[:, 1]
    grid = torch.stack((2.0 * pos_x / max(w - 1, 1) - 1.0, 2.0 * pos_y / max(h - 1, 1) - 1.0), dim=3)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=align_corners)


def _spynet_level() -> nn.Sequential:
    """One SPyNet pyramid level: five 7x7 convolutions (8->32->64->32->16->2), ReLU between them."""
    layers: list[nn.Module] = []
    for index, (c_in, c_out) in enumerate(zip(_LEVEL_CHANNELS[:-1], _LEVEL_CHANNELS[1:])):
        conv = nn.Conv2d(c_in, c_out, kernel_size=7, stride=1, padding=3)
        # mmcv ConvModule init, used by the official SPyNet: Kaiming normal, fan_out, ReLU gain, zero bias.
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers.append(conv)
        if index < len(_LEVEL_CHANNELS) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


#: mmediting 0.x ``SPyNet.state_dict()`` keys -> :class:`SPyNet`'s: ``basic_module.{level}.basic_module.{k}.conv.*``
#: (the ``k``-th ConvModule of a level) becomes ``levels.{level}.{2k}.*`` (ReLUs sit at the odd indices); the
#: ``mean``/``std`` buffers keep their names. Strict: 62 keys, nothing else.
SPYNET_KEYS = KeyMap(
    rules=tuple((rf"basic_module\.(\d)\.basic_module\.{k}\.conv\.(weight|bias)", rf"levels.\1.{2 * k}.\2")
                for k in range(len(_LEVEL_CHANNELS) - 1)) + ((r"(mean|std)", r"\1"),),
    strict=True,
    name="SPyNet (mmediting 0.x)",
)


class SPyNet(nn.Module):
    """SPyNet optical flow, six-level coarse-to-fine pyramid (Ranjan & Black, CVPR 2017).

    Architecture and weight layout of mmediting 0.x ``basicvsr_net.py::SPyNet`` (keys map 1:1 through
    :data:`SPYNET_KEYS`): inputs are normalised with the ImageNet mean/std, a five-level
    average-pool pyramid is built, and at each level (coarse to fine) the flow is upsampled x2 (bilinear,
    align_corners=True, values x2), ``supp`` is warped with it (border padding), and a small CNN predicts
    the residual flow from ``[ref, warped supp, flow]``. Frames whose size is not a multiple of 32 are
    resized (bilinear) to the next multiple of 32 and the flow is resized back and rescaled, as officially.

    Args:
        pretrained: optional path of SPyNet weights: the official mmediting file
            (``spynet_20210409-c6c1bd09.pth``, keys ``basic_module.*``, optionally under ``state_dict``) or a
            ``state_dict()`` of this class. None keeps the random init (only useful when the weights come
            from a full network checkpoint afterwards).

    Raises:
        WeightsError: if ``pretrained`` is missing, unreadable or does not match the architecture.
    """

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        self.levels = nn.ModuleList(_spynet_level() for _ in range(_NUM_LEVELS))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str | Path) -> None:
        """Load SPyNet weights from ``path`` (official mmediting layout or ours, see class docstring).

        Raises:
            WeightsError: missing/unreadable file, or keys/shapes that do not match.
        """
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"SPyNet weights file not found: {path} (`{SPYNET.download_command}` fetches the "
                               f"official {SPYNET.filename} to {SPYNET.path()})")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a weights file"
            raise WeightsError(f"cannot read SPyNet weights from {path}: {exc}") from exc
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise WeightsError(f"{path} is not a SPyNet state dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if any(k.startswith("basic_module.") for k in state):  # official layout: rename through the key map
            state = SPYNET_KEYS.apply(state, source=str(path))
        # mean/std are fixed constants; old files may not store them.
        state.setdefault("mean", self.mean.clone())
        state.setdefault("std", self.std.clone())
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or mismatched:
            raise WeightsError(f"{path} does not match SPyNet: missing {missing[:5]}, unexpected "
                               f"{unexpected[:5]}, mis-shaped {mismatched[:5]}")
        self.load_state_dict(state)

    def _coarse_to_fine(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow from ``ref`` to ``supp`` for frames whose sides are multiples of 32: (n, 2, h, w) pixels."""
        ref_pyramid = [(ref - self.mean) / self.std]
        supp_pyramid = [(supp - self.mean) / self.std]
        for _ in range(_NUM_LEVELS - 1):
            ref_pyramid.append(F.avg_pool2d(ref_pyramid[-1], kernel_size=2, stride=2))
            supp_pyramid.append(F.avg_pool2d(supp_pyramid[-1], kernel_size=2, stride=2))
        n, _, h, w = ref.shape
        flow = ref.new_zeros(n, 2, h // _SIZE_MULTIPLE, w // _SIZE_MULTIPLE)
        for level, (ref_level, supp_level) in enumerate(zip(ref_pyramid[::-1], supp_pyramid[::-1])):
            if level > 0:
                # Next finer level: twice the resolution, so displacements in pixels double too.
                flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supp_level, flow, padding_mode="border")
            flow = flow + self.levels[level](torch.cat([ref_level, warped, flow], dim=1))
        return flow

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Estimate the flow from ``ref`` to ``supp``.

        Args:
            ref: reference frames ``(n, 3, h, w)``, RGB float in [0, 1].
            supp: supporting frames ``(n, 3, h, w)``, RGB float in [0, 1].

        Returns:
            Flow ``(n, 2, h, w)`` in pixels of the input resolution (channel 0 = x, 1 = y) such that
            ``flow_warp(supp, flow)`` approximates ``ref``.

        Raises:
            InputError: if the inputs are not two ``(n, 3, h, w)`` tensors of the same shape.
        """
        if ref.ndim != 4 or ref.shape[1] != 3 or ref.shape != supp.shape:
            raise InputError(f"SPyNet expects ref and supp (n, 3, h, w) of the same shape; got {tuple(ref.shape)} "
                             f"and {tuple(supp.shape)}")
        h, w = ref.shape[-2:]
        h_up = -(-h // _SIZE_MULTIPLE) * _SIZE_MULTIPLE
        w_up = -(-w // _SIZE_MULTIPLE) * _SIZE_MULTIPLE
        if (h_up, w_up) == (h, w):
            return self._coarse_to_fine(ref, supp)
        ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = F.interpolate(self._coarse_to_fine(ref, supp), size=(h, w), mode="bilinear", align_corners=False)
        # Displacements were measured on the resized grid: rescale them to input pixels.
        scale = flow.new_tensor([w / w_up, h / h_up]).view(1, 2, 1, 1)
        return flow * scale
