"""Degradations: determinism, ranges, per-clip drift, video compression, operators, BI protocol."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from basicsr.utils.img_process_util import USMSharp

from zoo.data.degradations import (
    OPERATIONS,
    BicubicDegradation,
    RealBasicVSRDegradation,
    RealESRGANDegradation,
    bicubic_downsample,
    usm_sharp,
    video_compress,
)
from zoo.data.degradations.kernels import KERNEL_TYPES, KernelSteps, sample_kernel_params
from zoo.data.degradations.ops import add_gaussian_noise, add_poisson_noise, filter_frames, jpeg_compress
from zoo.data.video_io import open_video
from zoo.errors import ConfigError, InputError
from zoo.testing import sample_clip_dir


@pytest.fixture(scope="module")
def gt() -> torch.Tensor:
    """8 real frames, 64x64 crop of the embedded sample: (8, 3, 64, 64) in [0, 1]."""
    return open_video(sample_clip_dir()).read(0, 8)[:, :, 100:164, 200:264].contiguous()


def _lq(degradation: RealESRGANDegradation, gt: torch.Tensor, seed: int) -> torch.Tensor:
    return degradation(gt, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_same_seed_gives_identical_lq(gt, codec):
    degradation = RealESRGANDegradation(video_codecs=(codec,))
    first, second = _lq(degradation, gt, 7), _lq(degradation, gt, 7)
    assert torch.equal(first, second)
    assert not torch.equal(first, _lq(degradation, gt, 8))


@pytest.mark.parametrize("backend", ["diffjpeg", "cv2"])
def test_lq_shape_range_and_levels(gt, backend):
    degradation = RealESRGANDegradation(jpeg_backend=backend)
    for seed in range(4):
        lq = _lq(degradation, gt, seed)
        assert lq.shape == (8, 3, 16, 16) and lq.dtype == torch.float32
        assert float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0
        assert torch.equal(lq, (lq * 255).round() / 255)  # 8-bit levels
        assert not torch.equal(lq, bicubic_downsample(gt, 4))


def test_scale_two_and_tiny_frames():
    gt = torch.rand(3, 3, 8, 12)
    lq = RealESRGANDegradation(scale=2)(gt, torch.Generator().manual_seed(0))
    assert lq.shape == (3, 3, 4, 6)


def test_parameters_drift_slowly_within_a_clip():
    degradation = RealESRGANDegradation()
    adjacent, distant = [], []
    for seed in range(40):
        params = degradation.sample_params(30, np.random.default_rng(seed))
        blur = params.first.blur
        if blur.kind != "sinc":
            sigma = blur.sigma_x
            assert np.all(np.abs(np.diff(sigma)) <= 0.02 + 1e-9)
            assert sigma.min() >= 0.2 and sigma.max() <= 3.0
            adjacent.append(np.abs(np.diff(sigma)).mean())
            distant.append(abs(sigma[-1] - sigma[0]))
        level = params.first.noise_level
        step = 0.1 if params.first.noise_kind == "gaussian" else 0.005
        assert np.all(np.abs(np.diff(level)) <= step + 1e-9)
        assert np.all(np.abs(np.diff(params.first.jpeg_quality)) <= 3 + 1e-9)
    adjacent_frames = [a for a in adjacent if a > 0]
    assert len(adjacent_frames) > 20  # frames differ
    assert np.mean(adjacent) < np.mean(distant)  # a random walk: far frames differ more than neighbours
    constant = RealESRGANDegradation(drift=False).sample_params(30, np.random.default_rng(0))
    assert np.ptp(constant.first.blur.sigma_x) == 0 and np.ptp(constant.first.noise_level) == 0


def test_noise_level_drift_shows_in_the_frames():
    """Gaussian noise with sigma drifting from 5 to 30 levels: the measured noise follows it."""
    flat = torch.full((30, 3, 32, 32), 0.5)
    sigma = np.linspace(5, 30, 30)
    noisy = add_gaussian_noise(flat, sigma, gray=False, generator=torch.Generator().manual_seed(0))
    measured = (noisy - flat).flatten(1).std(dim=1) * 255
    assert np.allclose(measured.numpy(), sigma, rtol=0.1)
    gray = add_gaussian_noise(flat, 10.0, gray=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_poisson_noise():
    image = torch.rand(4, 3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    noisy = add_poisson_noise(image, np.full(4, 1.0), gray=False, generator=generator)
    assert noisy.shape == image.shape and 0 <= float(noisy.min()) and float(noisy.max()) <= 1
    assert abs(float((noisy - image).mean())) < 0.01 and float((noisy - image).std()) > 0.01
    gray = add_poisson_noise(image, 1.0, gray=True, generator=generator) - image.clamp(0, 1)
    assert gray.abs().sum() > 0


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
@pytest.mark.parametrize("size", [(16, 16), (18, 30), (5, 7)])
def test_video_compression_changes_frames_and_keeps_shape(codec, size):
    frames = torch.rand(6, 3, *size, generator=torch.Generator().manual_seed(1))
    out = video_compress(frames, codec=codec, bitrate=10_000)
    assert out.shape == frames.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert float((out - frames).abs().mean()) > 0.01
    assert torch.equal(out, video_compress(frames, codec=codec, bitrate=10_000))
    with pytest.raises(ConfigError):
        video_compress(frames, codec="vp9", bitrate=10_000)


def test_kernels_are_normalized_for_every_kind():
    rng = np.random.default_rng(0)
    for kind in KERNEL_TYPES[:-1]:
        params = sample_kernel_params(rng, 5, kernel_list=(kind,), kernel_prob=(1.0,), kernel_sizes=(7, 21),
                                      sinc_prob=0.0, sigma_range=(0.2, 3), betag_range=(0.5, 4),
                                      betap_range=(1, 2), steps=KernelSteps())
        kernels = params.kernels()
        assert params.kind == kind and kernels.shape == (5, params.size, params.size)
        assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(5), atol=1e-5)
    sinc = sample_kernel_params(rng, 3, kernel_list=("iso",), kernel_prob=(1.0,), kernel_sizes=(9,), sinc_prob=1.0,
                                sigma_range=(0.2, 3), betag_range=(0.5, 4), betap_range=(1, 2), steps=KernelSteps())
    assert sinc.kind == "sinc" and np.all((sinc.omega >= np.pi / 3) & (sinc.omega <= np.pi))


def test_filter_matches_on_large_and_small_frames():
    image = torch.rand(2, 3, 24, 24)
    identity = torch.zeros(2, 21, 21)
    identity[:, 10, 10] = 1
    assert torch.allclose(filter_frames(image, identity), image)
    small = torch.rand(2, 3, 5, 6)  # too small for reflect padding of a 21x21 kernel
    assert torch.allclose(filter_frames(small, identity), small)


def test_usm_sharp_matches_basicsr_module():
    image = torch.rand(2, 3, 40, 48)
    assert torch.allclose(usm_sharp(image), USMSharp()(image), atol=1e-5)


@pytest.mark.parametrize("backend", ["diffjpeg", "cv2"])
def test_jpeg_takes_a_quality_per_frame(backend):
    image = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    out = jpeg_compress(image, np.array([10.0, 50.0, 95.0]), backend=backend)
    assert out.shape == image.shape and out.is_contiguous()
    errors = (out - image).abs().flatten(1).mean(dim=1)
    assert errors[0] > errors[1] > errors[2]


def test_bicubic_downsample():
    clip = torch.rand(2, 5, 3, 16, 24)
    assert bicubic_downsample(clip, 4).shape == (2, 5, 3, 4, 6)
    assert bicubic_downsample(clip[0], 4).shape == (5, 3, 4, 6)
    flat = torch.full((1, 3, 8, 8), 0.4)
    assert torch.allclose(bicubic_downsample(flat, 4), torch.full((1, 3, 2, 2), round(0.4 * 255) / 255))
    assert torch.equal(BicubicDegradation(scale=4)(clip[0]), bicubic_downsample(clip[0], 4))
    with pytest.raises(InputError, match="divisible"):
        bicubic_downsample(torch.rand(1, 3, 10, 8), 4)


@pytest.mark.parametrize("size", [(360, 640), (359, 637), (101, 75)])
def test_bi_downsampling_is_matlab_imresize_on_real_frames(size):
    """BI LR frames equal basicsr's MATLAB imresize port (its numpy path, as BasicSR's data scripts call it) to the
    8-bit level, on real frames of even and odd sizes; torch's antialiased bicubic does not (border ring)."""
    from basicsr.utils.matlab_functions import imresize

    from zoo.data.degradations import bicubic_upsample, matlab_imresize

    h, w = size
    frames = open_video(sample_clip_dir()).read(0, 2)[..., :h, :w]  # real frames, cropped to the size
    ours = matlab_imresize(frames, 1 / 4)
    assert ours.shape == (2, 3, -(-h // 4), -(-w // 4))
    for i in range(2):
        image = frames[i].permute(1, 2, 0).numpy().astype(np.float64)
        reference = np.clip(np.round(imresize(image, 1 / 4) * 255), 0, 255).astype(np.uint8)
        got = (ours[i].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        assert np.array_equal(got, reference)
    if h % 4 == 0 and w % 4 == 0:
        lq = bicubic_downsample(frames, 4)
        torch.testing.assert_close(lq, (ours * 255).round().clamp(0, 255) / 255, atol=0, rtol=0)
        torch_bicubic = torch.nn.functional.interpolate(frames, scale_factor=0.25, mode="bicubic", antialias=True)
        assert (torch_bicubic.clamp(0, 1) * 255 - lq * 255).abs().max() > 5  # differs on the border ring
        up = bicubic_upsample(lq, 4)
        assert up.shape == frames.shape and 0 <= float(up.min()) and float(up.max()) <= 1
        reference = imresize(lq[0].permute(1, 2, 0).numpy().astype(np.float64), 4)
        torch.testing.assert_close(up[0].permute(1, 2, 0).double(),
                                   torch.from_numpy(np.clip(reference, 0, 1)).double(), atol=1e-5, rtol=0)


def test_bad_options_and_inputs(gt):
    with pytest.raises(ConfigError):
        RealESRGANDegradation(kernel_sizes=(8,))
    with pytest.raises(ConfigError):
        RealESRGANDegradation(jpeg_range=(0, 120))
    with pytest.raises(ConfigError):
        RealESRGANDegradation(video_codecs=("h265",))
    with pytest.raises(ConfigError):
        RealESRGANDegradation(kernel_list=("iso",), kernel_prob=(0.5, 0.5))
    with pytest.raises(InputError, match="divisible"):
        RealESRGANDegradation()(gt[:, :, :30], torch.Generator())
    with pytest.raises(InputError, match="shape"):
        RealESRGANDegradation()(gt[None], torch.Generator())


# ---------------------------------------------------------------------------------- RealBasicVSR's official pipeline
def _official_blur(sigma, **extra):
    """One blur entry of mmagic's realbasicvsr_wogan-c64b20-2x30x8_8xb2-lr1e-4-300k_reds.py, written out."""
    return dict(**extra, kernel_size=[7, 9, 11, 13, 15, 17, 19, 21],
                kernel_list=["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso",
                             "sinc"],
                kernel_prob=[0.405, 0.225, 0.108, 0.027, 0.108, 0.027, 0.1], sigma_x=sigma, sigma_y=sigma,
                rotate_angle=[-3.1416, 3.1416], beta_gaussian=[0.5, 4], beta_plateau=[1, 2], sigma_x_step=0.02,
                sigma_y_step=0.02, rotate_angle_step=0.31416, beta_gaussian_step=0.05, beta_plateau_step=0.1,
                omega_step=0.0628)


def test_realbasicvsr_table_and_order_are_the_official_configs():
    """Pins the parameter table and the order of operations to the official config (transcribed here by hand)."""
    third = [1 / 3.0] * 3
    noise = dict(noise_type=["gaussian", "poisson"], noise_prob=[0.5, 0.5], gaussian_gray_noise_prob=0.4,
                 poisson_gray_noise_prob=0.4, gaussian_sigma_step=0.1, poisson_scale_step=0.005)
    video = dict(codec=["libx264", "h264", "mpeg4"], codec_prob=third, bitrate=[1e4, 1e5])
    official = {
        "unsharp_masking": dict(kernel_size=51, sigma=0, weight=0.5, threshold=10),
        "blur1": _official_blur([0.2, 3]),
        "resize1": dict(resize_mode_prob=[0.2, 0.7, 0.1], resize_scale=[0.15, 1.5],
                        resize_opt=["bilinear", "area", "bicubic"], resize_prob=third, resize_step=0.015,
                        is_size_even=True),
        "noise1": dict(noise, gaussian_sigma=[1, 30], poisson_scale=[0.05, 3]),
        "jpeg1": dict(quality=[30, 95], quality_step=3),
        "video1": video,
        "blur2": _official_blur([0.2, 1.5], prob=0.8),
        "resize2": dict(resize_mode_prob=[0.3, 0.4, 0.3], resize_scale=[0.3, 1.2],
                        resize_opt=["bilinear", "area", "bicubic"], resize_prob=third, resize_step=0.03,
                        is_size_even=True),
        "noise2": dict(noise, gaussian_sigma=[1, 25], poisson_scale=[0.05, 2.5]),
        "jpeg2": dict(quality=[30, 95], quality_step=3),
        "video2": video,
        "resize3": dict(resize_opt=["bilinear", "area", "bicubic"], resize_prob=third),
        "sinc": dict(prob=0.8, kernel_size=[7, 9, 11, 13, 15, 17, 19, 21], kernel_list=["sinc"], kernel_prob=[1],
                     omega=[3.1416 / 3, 3.1416], omega_step=0.0628),
    }
    assert RealBasicVSRDegradation().table == official
    assert OPERATIONS == ("unsharp_masking", "blur1", "resize1", "noise1", "jpeg1", "video1", "blur2", "resize2",
                          "noise2", "jpeg2", ("shuffle", (("video2",), ("resize3", "sinc"))), "clip")


def test_realbasicvsr_runs_the_operations_in_order(gt):
    """The executed order is the table's, with both orders of the final shuffle; video compression rescales all
    frames to the first frame's size; the drifting resize gives even sizes; JPEG returns uint8; the LQ is GT / 4."""
    degradation = RealBasicVSRDegradation()
    prefix = ["unsharp_masking", "blur1", "resize1", "noise1", "jpeg1", "video1", "blur2", "resize2", "noise2",
              "jpeg2"]
    tails, drifted = set(), False
    for seed in range(8):
        log = []
        lq = degradation(gt[:6], torch.Generator().manual_seed(seed),
                         trace=lambda name, frames: log.append((name, [f.shape for f in frames], frames[0].dtype)))
        names = [name for name, _, _ in log]
        assert names[:10] == prefix
        tails.add(tuple(names[10:]))
        shapes = dict((name, s) for name, s, _ in log)
        assert len(set(shapes["video1"])) == 1 and shapes["video1"][0] == shapes["resize1"][0]
        assert all(h % 2 == 0 and w % 2 == 0 for h, w, _ in shapes["resize1"] + shapes["resize2"])
        drifted |= len(set(shapes["resize1"])) > 1
        assert dict((name, d) for name, _, d in log)["jpeg2"] == np.uint8
        assert lq.shape == (6, 3, 16, 16) and lq.dtype == torch.float32 and 0 <= lq.min() and lq.max() <= 1
    assert tails == {("video2", "resize3", "sinc", "clip"), ("resize3", "sinc", "video2", "clip")}
    assert drifted


def test_realbasicvsr_is_reproducible_and_checks_its_options(gt):
    degradation = RealBasicVSRDegradation()
    first = degradation(gt[:4], torch.Generator().manual_seed(3))
    assert torch.equal(first, degradation(gt[:4], torch.Generator().manual_seed(3)))
    assert not torch.equal(first, degradation(gt[:4], torch.Generator().manual_seed(4)))
    with pytest.raises(ConfigError, match="unknown RealBasicVSR degradation operation 'jpeg3'"):
        RealBasicVSRDegradation(overrides={"jpeg3": {}})
    with pytest.raises(ConfigError, match="unknown parameter"):
        RealBasicVSRDegradation(overrides={"jpeg1": {"qualit": [1, 2]}})
    with pytest.raises(ConfigError, match="codecs"):
        RealBasicVSRDegradation(overrides={"video2": {"codec": ["h265"], "codec_prob": [1]}})
    with pytest.raises(InputError, match="divisible"):
        degradation(gt[:, :, :30], torch.Generator())


def test_realbasicvsr_codecs_and_bitrates_follow_the_table(monkeypatch):
    """libx264 / h264 / mpeg4 with 1/3 each: x264 (FFmpeg's h264 encoder) twice as often as mpeg4."""
    from zoo.data.degradations import realbasicvsr

    calls = []
    monkeypatch.setattr(realbasicvsr, "encode_decode", lambda frames, **kw: calls.append(kw) or frames)
    degradation, rng = RealBasicVSRDegradation(), np.random.default_rng(0)
    frames = [np.zeros((8, 8, 3), np.uint8)]
    for _ in range(3000):
        degradation._video(frames, degradation.table["video1"], rng)
    codecs = [c["codec"] for c in calls]
    x264 = sum(c in ("libx264", "h264") for c in codecs) / len(codecs)
    assert abs(x264 - 2 / 3) < 0.03 and set(codecs) == {"libx264", "h264", "mpeg4"}
    assert min(c["bitrate"] for c in calls) >= 10_000 and max(c["bitrate"] for c in calls) <= 100_000
    from av.codec import Codec

    assert Codec("h264", "w").name == "libx264"


def test_realbasicvsr_noise_is_on_the_0_255_scale():
    """Gaussian sigma in levels; Poisson noise of the official code: poisson(x v) / v - x on levels (x = 128, one
    level in the frame so v = 1: std sqrt(128) = 11.3 levels, not Real-ESRGAN's 0..1-scale 180 levels)."""
    rng = np.random.default_rng(0)
    frame = [np.full((128, 128, 3), 128.0, np.float32)]
    table = RealBasicVSRDegradation().table["noise1"]
    gaussian = dict(table, noise_prob=[1, 0], gaussian_sigma=[10, 10], gaussian_gray_noise_prob=0.0)
    out = RealBasicVSRDegradation._noise(frame, gaussian, rng)[0] - 128
    assert abs(out.std() - 10) < 0.3
    gray = dict(gaussian, gaussian_gray_noise_prob=1.0)
    out = RealBasicVSRDegradation._noise(frame, gray, rng)[0]
    assert np.array_equal(out[..., 0], out[..., 2])
    poisson = dict(table, noise_prob=[0, 1], poisson_scale=[1, 1], poisson_gray_noise_prob=0.0)
    out = RealBasicVSRDegradation._noise(frame, poisson, rng)[0] - 128
    assert abs(out.std() - 128 ** 0.5) < 0.4


def test_realbasicvsr_second_resize_is_relative_to_the_current_size(gt):
    overrides = {"resize1": {"resize_mode_prob": [0, 0, 1]}, "resize2": {"resize_mode_prob": [0, 0, 1]}}
    log = []
    RealBasicVSRDegradation(overrides=overrides)(gt[:2], torch.Generator().manual_seed(0),
                                                 trace=lambda name, frames: log.append((name, frames[0].shape)))
    shapes = dict(log)
    assert shapes["resize1"][:2] == (64, 64) and shapes["resize2"][:2] == (64, 64)  # "keep": the GT size, not 16
