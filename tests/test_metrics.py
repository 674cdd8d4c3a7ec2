"""Metrics: PSNR/SSIM against skimage and BasicSR, LPIPS weight handling, E*warp / tOF / tLPIPS properties, NIQE,
and the VideoMetrics accumulator."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision
from einops import rearrange
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zoo.data.video_io import open_video
from zoo.errors import ConfigError, InputError, WeightsError
from zoo.metrics import LPIPSMetric, VideoMetrics, estimate_flow, psnr, ssim, tlpips, tof, warping_error
from zoo.metrics import lpips as lpips_module
from zoo.metrics.temporal import valid_mask
from zoo.testing import sample_clip_dir


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """The first real sample frame, (3, 360, 640) in [0, 1]."""
    return open_video(sample_clip_dir()).read(0, 1)[0]


@pytest.fixture(scope="module")
def noisy_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Real frames and a noisy version of them: sr, gt of shape (2, 3, 3, 48, 64)."""
    clip = open_video(sample_clip_dir()).read(0, 6)
    gt = rearrange(clip[:, :, 100:148, 200:264], "(b t) c h w -> b t c h w", b=2)
    sr = (gt + 0.03 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return sr, gt


@pytest.fixture(scope="module")
def random_lpips() -> LPIPSMetric:
    """LPIPS with a random AlexNet trunk (shapes only: values are meaningless)."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LPIPSMetric(net=lpips.LPIPS(net="alex", pnet_rand=True, verbose=False))


def _uint8_hwc(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(np.uint8)


@pytest.fixture()
def no_torch_weights(tmp_path, monkeypatch):
    """An empty TORCH_HOME, hub downloads made to fail, and LPIPS' warn-once flag reset."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(lpips_module, "_warned_missing", False)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch" / "hub" / "checkpoints"


# ------------------------------------------------------------------------------------------------- PSNR / SSIM
@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_ssim_rgb_match_skimage(noisy_pair, crop_border):
    sr, gt = noisy_pair
    got_psnr = psnr(sr, gt, crop_border=crop_border)
    got_ssim = ssim(sr, gt, crop_border=crop_border)
    assert got_psnr.shape == got_ssim.shape == (2,)
    c = crop_border
    for b in range(2):
        ref_psnr, ref_ssim = [], []
        for t in range(3):
            a, g = _uint8_hwc(sr[b, t]), _uint8_hwc(gt[b, t])
            if c:
                a, g = a[c:-c, c:-c], g[c:-c, c:-c]
            ref_psnr.append(peak_signal_noise_ratio(g, a, data_range=255))
            ref_ssim.append(structural_similarity(g.astype(np.float64), a.astype(np.float64), gaussian_weights=True,
                                                  sigma=1.5, use_sample_covariance=False, data_range=255,
                                                  channel_axis=2))
        assert got_psnr[b].item() == pytest.approx(np.mean(ref_psnr), abs=1e-9)
        assert got_ssim[b].item() == pytest.approx(np.mean(ref_ssim), abs=1e-9)


def test_psnr_ssim_y_channel_match_skimage_and_basicsr(noisy_pair):
    sr, gt = noisy_pair
    got_psnr = psnr(sr, gt, crop_border=2, y_channel=True)
    got_ssim = ssim(sr, gt, crop_border=2, y_channel=True)
    ref_psnr, ref_ssim = [], []
    for t in range(3):
        # skimage's rgb2ycbcr is ITU-R BT.601: Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1]
        a = rgb2ycbcr(_uint8_hwc(sr[0, t]) / 255.0)[2:-2, 2:-2, 0]
        g = rgb2ycbcr(_uint8_hwc(gt[0, t]) / 255.0)[2:-2, 2:-2, 0]
        ref_psnr.append(peak_signal_noise_ratio(g, a, data_range=255))
        ref_ssim.append(structural_similarity(g, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=255))
    assert got_psnr[0].item() == pytest.approx(np.mean(ref_psnr), abs=1e-6)
    assert got_ssim[0].item() == pytest.approx(np.mean(ref_ssim), abs=1e-6)

    psnr_ssim = pytest.importorskip("basicsr.metrics.psnr_ssim")
    bgr = [(_uint8_hwc(sr[0, t])[..., ::-1], _uint8_hwc(gt[0, t])[..., ::-1]) for t in range(3)]
    bsr_psnr = np.mean([psnr_ssim.calculate_psnr(a, g, 2, test_y_channel=True) for a, g in bgr])
    bsr_ssim = np.mean([psnr_ssim.calculate_ssim(a, g, 2, test_y_channel=True) for a, g in bgr])
    assert got_psnr[0].item() == pytest.approx(bsr_psnr, abs=1e-4)  # BasicSR's Y is float32
    assert got_ssim[0].item() == pytest.approx(bsr_ssim, abs=1e-5)


def test_identical_frames_give_inf_psnr_and_unit_ssim(noisy_pair):
    _, gt = noisy_pair
    assert torch.isinf(psnr(gt, gt)).all()
    torch.testing.assert_close(ssim(gt, gt), torch.ones(2, dtype=torch.float64))


def test_crop_border_ignores_the_border(noisy_pair):
    _, gt = noisy_pair
    sr = gt.clone()
    sr[..., :3, :] = 1 - sr[..., :3, :]  # spoil the top 3 rows only
    assert math.isfinite(psnr(sr, gt, crop_border=2)[0].item())
    assert torch.isinf(psnr(sr, gt, crop_border=3)).all()
    assert ssim(sr, gt, crop_border=3)[0].item() == pytest.approx(1.0)
    assert ssim(sr, gt)[0].item() < 0.999


def test_image_metrics_reject_bad_input(noisy_pair):
    sr, gt = noisy_pair
    with pytest.raises(InputError, match="same shape"):
        psnr(sr, gt[..., :-1])
    with pytest.raises(InputError, match=r"\(b, t, c, h, w\)"):
        ssim(sr[0], gt[0])
    with pytest.raises(InputError, match="crop_border"):
        psnr(sr, gt, crop_border=24)


# ------------------------------------------------------------------------------------------------------- LPIPS
def test_lpips_shape_with_random_trunk(noisy_pair, random_lpips):
    metric = random_lpips
    sr, gt = noisy_pair
    assert metric.is_available
    dist = metric(sr, gt)
    assert dist.shape == (2,) and torch.isfinite(dist).all() and (dist > 0).all()
    assert metric(gt, gt).abs().max() < 1e-6


def test_lpips_missing_weights_warns_once_and_is_unavailable(no_torch_weights, noisy_pair):
    with pytest.warns(UserWarning, match="alexnet-owt-7be5be79.pth") as record:
        metric = LPIPSMetric()
        LPIPSMetric()
    assert len([w for w in record if "LPIPS" in str(w.message)]) == 1
    assert str(no_torch_weights / "alexnet-owt-7be5be79.pth") in str(record[0].message)
    assert not metric.is_available
    with pytest.raises(WeightsError, match="alexnet-owt-7be5be79.pth"):
        metric(*noisy_pair)


def test_lpips_loads_local_alexnet_file_without_download(no_torch_weights, noisy_pair):
    no_torch_weights.mkdir(parents=True)
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save(alexnet.state_dict(), no_torch_weights / "alexnet-owt-7be5be79.pth")
    metric = LPIPSMetric()
    assert metric.is_available
    torch.testing.assert_close(getattr(metric.net.net.slice2, "3").weight, alexnet.features[3].weight)
    torch.testing.assert_close(getattr(metric.net.net.slice5, "10").bias, alexnet.features[10].bias)
    assert metric(*noisy_pair).shape == (2,)


def test_lpips_rejects_a_wrong_file(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="features.0.weight"):
        LPIPSMetric(weights_path=path)


# ----------------------------------------------------------------------------------------------------- temporal
def _shifted_clip(frame: torch.Tensor, frames: int, dy: int, dx: int) -> torch.Tensor:
    """A camera pan over a real frame: frame t is the window moved by (t dy, t dx) px; (1, t, 3, 160, 240)."""
    return torch.stack([frame[:, 60 + t * dy:220 + t * dy, 100 + t * dx:340 + t * dx] for t in range(frames)])[None]


def test_flow_recovers_a_global_shift(frame):
    clip = _shifted_clip(frame, 2, dy=2, dx=3)
    flow = estimate_flow(clip[:, 0], clip[:, 1])  # frame0(p) = frame1(p + flow) = frame1(p - (3, 2))
    assert flow.shape == (1, 2, 160, 240)
    inner = flow[..., 16:-16, 16:-16]
    assert inner[:, 0].median().item() == pytest.approx(-3.0, abs=0.1)
    assert inner[:, 1].median().item() == pytest.approx(-2.0, abs=0.1)


def test_warping_error_static_shift_flicker(frame):
    static = _shifted_clip(frame, 4, 0, 0)
    shifted = _shifted_clip(frame, 4, dy=2, dx=3)
    gains = torch.tensor([1.0, 0.75, 1.2, 0.85]).view(1, 4, 1, 1, 1)
    flicker = (static * gains).clamp(0, 1)
    e_static = warping_error(static).item()
    e_shift = warping_error(shifted).item()
    e_flicker = warping_error(flicker).item()
    assert e_static < 1e-12
    assert e_shift < 3e-4  # the flow undoes the pan: only interpolation error is left
    assert e_flicker > 10 * e_shift and e_flicker > 1e-3
    both = torch.cat([static, flicker])
    torch.testing.assert_close(warping_error(both), torch.tensor([e_static, e_flicker], dtype=torch.float64))


def test_warping_error_flow_source_and_mask(frame):
    shifted = _shifted_clip(frame, 3, dy=0, dx=4)
    flow_fw = estimate_flow(shifted[:, 0], shifted[:, 1])
    flow_bw = estimate_flow(shifted[:, 1], shifted[:, 0])
    mask = valid_mask(flow_fw, flow_bw)
    assert mask.shape == (1, 1, 160, 240)
    assert mask[..., :, :3].sum() == 0  # points left of frame t+1: occluded
    assert mask[..., 8:-8, 8:-8].mean() > 0.9
    noisy = (shifted + 0.02 * torch.randn(shifted.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert warping_error(noisy, flow_source=shifted).item() > warping_error(shifted).item()
    with pytest.raises(InputError, match="flow_source"):
        warping_error(noisy, flow_source=shifted[..., :-1])
    with pytest.raises(InputError, match="2 frames"):
        warping_error(shifted[:, :1])


def test_raft_errors_are_clear(no_torch_weights, frame):
    clip = _shifted_clip(frame, 2, 0, 1)
    with pytest.raises(InputError, match="128x128"):
        warping_error(clip[..., :64, :], flow="raft")
    with pytest.raises(WeightsError, match="raft_large_C_T_SKHT_V2-ff5fadd5.pth"):
        warping_error(clip, flow="raft")
    with pytest.raises(InputError, match="unknown flow"):
        warping_error(clip, flow="lk")


def test_tof_and_tlpips(frame, random_lpips):
    static = _shifted_clip(frame, 3, 0, 0)
    shifted = _shifted_clip(frame, 3, dy=0, dx=3)
    assert tof(shifted, shifted).item() == 0.0
    assert tof(static, shifted).item() == pytest.approx(3.0, abs=0.5)  # |0 - (-3, 0)| px
    metric = random_lpips
    small_static, small_shifted = static[..., :64, :64], shifted[..., :64, :64]
    assert tlpips(small_shifted, small_shifted, lpips_metric=metric).item() == 0.0
    value = tlpips(torch.cat([small_static, small_static]), torch.cat([small_shifted, small_static]), lpips_metric=metric)
    assert value.shape == (2,) and value[0] > 0 and value[1] == 0


# -------------------------------------------------------------------------------------------------------- NIQE
def test_niqe_on_real_frames():
    pytest.importorskip("basicsr.metrics.niqe")
    from zoo.metrics import niqe

    clip = open_video(sample_clip_dir()).read(0, 2)[None, :, :, :96, :192]
    score = niqe(clip)
    assert score.shape == (1,) and 0 < score.item() < 100
    with pytest.raises(InputError, match="96x192"):
        niqe(clip[..., :95, :])


def test_niqe_of_a_flat_frame_is_nan_with_one_warning():
    """basicsr's NIQE fit raises LinAlgError on a flat frame (singular covariance): that frame, and so its clip,
    scores NaN with one warning, and the other clips of the batch keep their scores."""
    pytest.importorskip("basicsr.metrics.niqe")
    from zoo.metrics import niqe

    real = open_video(sample_clip_dir()).read(0, 1)[None, :, :, :96, :192]
    flat = torch.full_like(real, 0.5)
    with pytest.warns(RuntimeWarning, match="undefined on 1 of 2 frames") as record:
        scores = niqe(torch.cat([real, flat]))
    assert len(record) == 1
    assert torch.isfinite(scores[0]) and torch.isnan(scores[1])


# --------------------------------------------------------------------------------------------------- collection
def test_video_metrics_accumulates_per_clip(no_torch_weights, noisy_pair):
    sr, gt = noisy_pair
    with pytest.warns(UserWarning, match="LPIPS"):
        metrics = VideoMetrics(crop_border=2)  # PSNR, SSIM, LPIPS, E*warp
    first = metrics.update(sr, gt, key=["a", "b"])
    assert [clip["key"] for clip in first] == ["a", "b"]
    # no LPIPS without weights; E*warp's name says its flow: from the GT, DIS (no RAFT weights here)
    assert set(first[0]) == {"key", "psnr", "ssim", "ewarp_gt_dis"}
    assert first[0]["psnr"] == pytest.approx(psnr(sr, gt, crop_border=2, y_channel=True)[0].item())
    assert first[1]["ewarp_gt_dis"] == pytest.approx(1e3 * warping_error(sr, flow_source=gt, crop_border=2)[1].item())
    assert first[1]["ewarp_gt_dis"] != pytest.approx(1e3 * warping_error(sr, crop_border=2)[1].item())
    no_gt = metrics.update(sr[:1], key="c")  # no GT: only E*warp, with the SR clip's own flow
    assert set(no_gt[0]) == {"key", "ewarp_sr_dis"}
    assert no_gt[0]["ewarp_sr_dis"] == pytest.approx(1e3 * warping_error(sr[:1], crop_border=2)[0].item())
    assert len(metrics.per_clip()) == 3
    summary = metrics.compute()
    assert summary["psnr"] == pytest.approx((first[0]["psnr"] + first[1]["psnr"]) / 2)
    assert summary["ewarp_gt_dis"] == pytest.approx(np.mean([c["ewarp_gt_dis"] for c in first]))
    assert summary["ewarp_sr_dis"] == pytest.approx(no_gt[0]["ewarp_sr_dis"])  # never averaged with GT-flow ones
    metrics.reset()
    assert metrics.compute() == {}


def test_video_metrics_with_lpips_and_bad_config(noisy_pair, random_lpips):
    sr, gt = noisy_pair
    metrics = VideoMetrics(psnr=False, ssim=False, warping_error=False, tof=True, tlpips=True, lpips_metric=random_lpips)
    result = metrics.update(sr, gt)
    assert set(result[0]) == {"key", "lpips", "tlpips", "tof"} and result[1]["key"] == "clip1"
    with pytest.raises(ConfigError, match="flow"):
        VideoMetrics(flow="lk")
    with pytest.raises(InputError, match="keys"):
        metrics.update(sr, gt, key="only-one")


def test_auto_flow_is_raft_only_when_its_weights_are_present(no_torch_weights):
    from zoo.metrics.temporal import RAFT_FILE, resolve_flow

    assert resolve_flow("auto", height=256, width=256) == "dis"
    no_torch_weights.mkdir(parents=True)
    (no_torch_weights / RAFT_FILE).write_bytes(b"present")
    assert resolve_flow("auto", height=256, width=256) == "raft"
    assert resolve_flow("auto", height=64, width=256) == "dis"  # RAFT needs 128 px
    assert resolve_flow("dis") == "dis"
    with pytest.raises(InputError, match="unknown flow"):
        resolve_flow("lk")

