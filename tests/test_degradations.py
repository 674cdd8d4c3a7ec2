"""Degradations: determinism, ranges, per-clip drift, video compression, operators, BI protocol."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from basicsr.utils.img_process_util import USMSharp

from zoo.data.degradations import (
    BicubicDegradation,
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
