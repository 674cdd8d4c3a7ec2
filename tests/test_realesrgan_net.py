"""Real-ESRGAN's frame-by-frame net without the ncnn package: the ncnn tool's tiling (tiles with enough context equal
the whole frame), the loader's tile options, and `vsrzoo upscale --model realesrgan` through them."""
from __future__ import annotations

import warnings

import pytest
import torch

from zoo.cli import main
from zoo.data.video_io import VideoWriter, open_video
from zoo.errors import ConfigError
from zoo.hub import load_pretrained
from zoo.testing import assert_usage_error, sample_clip_dir

torch.set_num_threads(1)


def _tiny(**options):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM"):
        return load_pretrained("realesrgan", None, variant="tiny", **options)


def test_tiles_with_context_wider_than_the_receptive_field_equal_the_whole_frame():
    """Tiles of 16 px reading 24 px of context (wider than the tiny net's receptive field) on a 36x40 frame, whose
    last tiles are partial: the stitched output equals the whole-frame output; with 2 px of context it does not."""
    lq = torch.rand(1, 2, 3, 36, 40, generator=torch.Generator().manual_seed(0))
    whole, tiled, narrow = _tiny(pre_pad=24), _tiny(tile=16, tile_overlap=48), _tiny(tile=16, tile_overlap=4)
    with torch.no_grad():
        reference, out, seams = whole(lq), tiled(lq), narrow(lq)
    assert out.shape == reference.shape == (1, 2, 3, 144, 160)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    assert (seams - reference).abs().max() > 1e-3


@pytest.mark.parametrize("options,expect", [({"tile_overlap": 5}, "even integer"),
                                            ({"tile_overlap": 20, "pre_pad": 10}, "not both"),
                                            ({"tile": -1}, "tile must be an integer >= 1")])
def test_bad_tile_options_are_refused(options, expect):
    with pytest.raises(ConfigError, match=expect), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the RANDOM warning, where the options get that far
        load_pretrained("realesrgan", None, variant="tiny", **options)


def test_upscale_command_tiles_realesrgan_itself(tmp_path, capsys):
    """`vsrzoo upscale --model realesrgan --tile 16 --tile-overlap 20`: the family receives the tile options (it tiles
    the ncnn tool's way) and writes every frame at x4."""
    frames = open_video(sample_clip_dir()).read(stop=2)[:, :, 100:140, 200:248]
    with VideoWriter(tmp_path / "lq", fps=25, as_frames=True) as writer:
        for frame in frames:
            writer.write(frame)
    out = tmp_path / "sr.mp4"
    code = main(["upscale", str(tmp_path / "lq"), "-o", str(out), "--model", "realesrgan", "--random-weights",
                 "--variant", "tiny", "--tile", "16", "--tile-overlap", "20", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    video = open_video(out)
    assert video.num_frames == 2 and (video.width, video.height) == (192, 160)
    code = main(["upscale", str(tmp_path / "lq"), "-o", str(tmp_path / "x.mp4"), "--model", "realesrgan",
                 "--random-weights", "--variant", "tiny", "--tile-overlap", "7", "--no-progress"])
    assert_usage_error(code, capsys.readouterr().err, "even integer")
