"""VideoGigaGAN network: shapes, gradients for every switch combination, and the four mechanisms as properties.

CPU, tiny configurations (``tiny_net()``, ``tiny_discriminator()``), real frames of the embedded
sample clip where an image matters (BlurPool shift test, overfit run).
"""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from zoo.config import build_module, describe_module
from zoo.data.video_io import open_video
from zoo.errors import ConfigError, InputError
from zoo.layers.antialias import Downsample2d, HighFrequencySplit, LowPass2d
from zoo.layers.discriminators import VideoDiscriminator
from zoo.layers.temporal import TemporalConv, TemporalSelfAttention
from zoo.models.videogigagan.net import VideoGigaGANNet
from zoo.testing import sample_clip_dir

from _tiny import tiny_discriminator, tiny_net


SWITCHES = ("temporal_attention", "flow_propagation", "blurpool", "hf_shuttle")
COMBINATIONS = [dict(zip(SWITCHES, values)) for values in itertools.product((False, True), repeat=4)]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample_frames() -> torch.Tensor:
    """The first 3 frames of the embedded real sample, (3, 3, 360, 640) in [0, 1]."""
    return open_video(sample_clip_dir()).read(0, 3)


def _unfreeze_zero_init(net: torch.nn.Module) -> None:
    """Give the zero-initialised temporal output layers small random weights.

    At initialisation their zero weights block the gradient to the layers inside the temporal branch (by design:
    the branch starts as the identity and only its output projection moves at the first step).
    """
    for module in net.modules():
        if isinstance(module, TemporalConv):
            torch.nn.init.normal_(module.conv.weight, std=0.02)
        elif isinstance(module, TemporalSelfAttention):
            torch.nn.init.normal_(module.attn.proj.weight, std=0.02)


def _manual_low_pass(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Binomial blur ([1, 2, 1] / 4 or the paper's [1, 4, 6, 4, 1] / 16, outer product), reflect padding, depthwise:
    written out independently."""
    taps = {3: torch.tensor([1.0, 2.0, 1.0]) / 4.0, 5: torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0}[size]
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, size, size)
    pad = size // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=x.shape[1])


@pytest.mark.parametrize("switches", COMBINATIONS, ids=lambda s: "-".join(k[:4] for k, v in s.items() if v) or "none")
def test_shapes_and_gradients_every_switch_combination(switches):
    torch.manual_seed(0)
    net = tiny_net(**switches)
    _unfreeze_zero_init(net)
    lq = torch.rand(1, 3, 3, 12, 18)  # 12 and 18 are not multiples of the stride: padding + crop
    sr = net(lq)
    assert sr.shape == (1, 3, 3, 48, 72)
    assert torch.isfinite(sr).all()
    sr.square().mean().backward()
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    assert trainable
    no_grad = [name for name, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    assert all(not p.requires_grad for p in net.parameters() if p not in set(trainable.values()))
    has = {
        "temporal_attention": any(isinstance(m, TemporalSelfAttention) for m in net.modules()),
        "flow_propagation": net.propagation is not None,
        "blurpool": any(isinstance(m, Downsample2d) and m.blurpool for m in net.modules()),
        "hf_shuttle": any(isinstance(m, HighFrequencySplit) for m in net.modules()),
    }
    assert has == switches


def test_scale_2_and_odd_sizes():
    torch.manual_seed(0)
    net = tiny_net(scale=2)
    for shape in [(2, 2, 3, 16, 16), (1, 1, 3, 5, 7)]:
        sr = net(torch.rand(shape))
        assert sr.shape == (*shape[:3], 2 * shape[3], 2 * shape[4])


def test_input_errors_and_config_errors():
    net = tiny_net(flow_propagation=False)
    with pytest.raises(InputError, match=r"\(b, t, 3, h, w\)"):
        net(torch.rand(1, 3, 16, 16))
    with pytest.raises(InputError, match="RGB"):
        net(torch.rand(1, 2, 4, 16, 16))
    with pytest.raises(InputError, match="float"):
        net(torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ConfigError):
        net.propagate(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ConfigError, match="power of two"):
        tiny_net(scale=3)
    with pytest.raises(ConfigError, match="attn_levels"):
        tiny_net(attn_levels=(5,))
    with pytest.raises(InputError, match="multiples of 4"):
        tiny_discriminator()(torch.rand(1, 2, 3, 18, 16))


def test_propagated_features_can_be_given_per_chunk():
    torch.manual_seed(0)
    net = tiny_net(temporal_attention=False).eval()
    lq = torch.rand(1, 4, 3, 16, 16)
    with torch.no_grad():
        whole = net(lq)
        feats = net.propagate(lq)
        chunks = torch.cat([net.upsample(lq[:, :2], feats[:, :2]), net.upsample(lq[:, 2:], feats[:, 2:])], dim=1)
    torch.testing.assert_close(chunks, whole, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="feats"):
        net.upsample(lq, feats[:, :2])


def test_checkpoint_rebuild_from_init_args():
    torch.manual_seed(0)
    net = tiny_net(scale=2, hf_shuttle=False)
    spec = describe_module(net)
    assert spec["class_path"] == "zoo.models.videogigagan.net.VideoGigaGANNet"
    rebuilt = build_module(spec)
    rebuilt.load_state_dict(net.state_dict())
    lq = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(lq), net(lq))


@pytest.mark.parametrize("size", [3, 5])
def test_blurpool_is_the_subsampled_low_pass(size):
    x = torch.rand(2, 4, 16, 12)
    pool = Downsample2d(in_channels=4, out_channels=4, blurpool=True, filter_size=size).pool
    torch.testing.assert_close(pool(x), LowPass2d(filter_size=size)(x)[..., ::2, ::2], rtol=0, atol=1e-6)
    torch.testing.assert_close(LowPass2d(filter_size=size)(x), _manual_low_pass(x, size), rtol=0, atol=1e-6)


def test_blurpool_makes_encoder_features_more_shift_stable(sample_frames):
    """A one-pixel shift of a real image changes the deepest encoder features (1/8 size) far less with BlurPool.

    Measure (Zhang 2019's consistency idea on features): ``||E(shift(x)) - E(x)|| / ||E(x)||`` over one-pixel shifts
    right, down and diagonal, interior of the 8x8 feature map, for nets with identical random weights.
    """
    frame = sample_frames[0]
    size = 64
    ratios = {False: [], True: []}
    for top, left in [(100, 200), (200, 400)]:
        crops = [frame[:, top + dy: top + dy + size, left + dx: left + dx + size] for dy, dx in
                 [(0, 0), (0, 1), (1, 0), (1, 1)]]
        clip = torch.stack(crops)[None]  # (1, 4, 3, 64, 64): frame 0 and its three shifted copies
        for seed in range(3):
            states = {}
            for blurpool in (False, True):
                torch.manual_seed(seed)
                net = tiny_net(channel_mults=(1, 2, 2, 2), attn_levels=(), flow_propagation=False,
                                           temporal_attention=False, hf_shuttle=False, blurpool=blurpool)
                states[blurpool] = net.state_dict()
                captured = {}
                net.encoder[-1].register_forward_hook(lambda m, i, o: captured.update(deep=o[0]))
                with torch.no_grad():
                    net.upsample(clip)
                deep = captured["deep"][..., 1:-1, 1:-1]  # (4, c, 6, 6)
                change = (deep[1:] - deep[:1]).norm() / (deep[:1].norm() * 3 ** 0.5)
                ratios[blurpool].append(change.item())
            assert states[False].keys() == states[True].keys()
            assert all(torch.equal(states[False][k], states[True][k]) for k in states[False])
    for strided, blurred in zip(ratios[False], ratios[True]):
        assert blurred < 0.5 * strided, (ratios, "BlurPool should halve the shift sensitivity at least")
    assert sum(ratios[True]) < 0.3 * sum(ratios[False]), ratios


@pytest.mark.parametrize("hf_shuttle", [True, False])
def test_hf_shuttle_skip_carries_feature_minus_low_pass(hf_shuttle):
    torch.manual_seed(0)
    net = tiny_net(channel_mults=(1, 2, 2), attn_levels=(2,), flow_propagation=False,
                               hf_shuttle=hf_shuttle)
    encoder_io, decoder_skips = [], []
    for level in net.encoder:
        level.skip.register_forward_hook(lambda m, i, o: encoder_io.append((i[0], o)))
    for level in net.decoder:
        level.register_forward_pre_hook(lambda m, args: decoder_skips.append(args[1]))
    with torch.no_grad():
        net(torch.rand(1, 2, 3, 16, 16))
    assert len(encoder_io) == net.num_levels
    for feature, skip in encoder_io:
        expected = feature - _manual_low_pass(feature) if hf_shuttle else feature
        torch.testing.assert_close(skip, expected, rtol=0, atol=1e-6)
    # The decoder levels at LQ resolution receive exactly these skips, deepest first; the levels above get none.
    for received, (_, sent) in zip(decoder_skips, reversed(encoder_io)):
        assert received is sent
    assert all(skip is None for skip in decoder_skips[net.num_levels:])


@pytest.mark.parametrize("flow_propagation", [False, True])
def test_fresh_temporal_layers_keep_the_per_frame_output(flow_propagation):
    torch.manual_seed(0)
    temporal = tiny_net(temporal_attention=True, flow_propagation=flow_propagation).eval()
    per_frame = tiny_net(temporal_attention=False, flow_propagation=flow_propagation).eval()
    result = per_frame.load_state_dict(temporal.state_dict(), strict=False)
    assert not result.missing_keys
    assert result.unexpected_keys and all(".temporal_" in key for key in result.unexpected_keys)
    lq = torch.rand(1, 4, 3, 12, 12)
    with torch.no_grad():
        out_temporal = temporal(lq)
        torch.testing.assert_close(out_temporal, per_frame(lq), rtol=0, atol=1e-6)
        if not flow_propagation:  # the per-frame model really is per frame: frame by frame gives the same
            frames = torch.cat([per_frame(lq[:, i: i + 1]) for i in range(lq.shape[1])], dim=1)
            torch.testing.assert_close(out_temporal, frames, rtol=0, atol=1e-5)


def test_discriminator_shapes_gradients_and_temporal_switch():
    torch.manual_seed(0)
    for temporal in (True, False):
        disc = tiny_discriminator(temporal=temporal)
        clip = torch.rand(2, 3, 3, 16, 20)
        logits = disc(clip)
        assert logits.shape == (2, 3)
        logits.sum().backward()
        assert all(p.grad is not None and torch.any(p.grad != 0) for p in disc.parameters())
    # With temporal layers a frame's logit depends on its neighbours; without them it does not.
    clip = torch.rand(1, 3, 3, 16, 16)
    changed = clip.clone()
    changed[:, 0] = torch.rand(3, 16, 16)
    with torch.no_grad():
        torch.manual_seed(1)
        video_d = tiny_discriminator(temporal=True)
        torch.manual_seed(1)
        image_d = tiny_discriminator(temporal=False)
        assert not torch.allclose(video_d(clip)[:, 1], video_d(changed)[:, 1])
        torch.testing.assert_close(image_d(clip)[:, 1:], image_d(changed)[:, 1:])


def test_short_overfit_lowers_charbonnier(sample_frames):
    """30 Adam steps on one real 3-frame clip (GT 48x48, bicubic x1/4 LQ 12x12) lower the Charbonnier loss clearly.

    The output is ``bicubic(lq) + residual``; a fresh net's residual is random, so the loss starts above the bicubic
    floor and training first has to bring it down there (beating bicubic takes longer than a unit test).
    """
    gt = sample_frames[:, :, 150:198, 300:348][None]  # (1, 3, 3, 48, 48)
    lq = F.interpolate(gt[0], scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)[None]
    torch.manual_seed(0)
    net = tiny_net()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)

    def charbonnier(sr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - gt) ** 2 + 1e-6).mean()

    losses = []
    for _ in range(30):
        loss = charbonnier(net(lq))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = charbonnier(net(lq)).item()
        bicubic = charbonnier(F.interpolate(lq[0], scale_factor=4, mode="bicubic", align_corners=False)[None]).item()
    assert final < 0.75 * losses[0], losses
    # The fresh net's random residual is gone: the loss is down to (about) the bicubic floor.
    assert final < 1.05 * bicubic, (final, bicubic)
