"""Shapes, control flow and gradients of the RealBasicVSR net and its layers (tiny configs, CPU)."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

from zoo.errors import InputError
from zoo.layers import PixelShufflePack, ResidualBlockNoBN, ResidualBlocksWithInputConv, SPyNet, flow_warp
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.models.realbasicvsr.net import MAX_CLEANING_PASSES, RealBasicVSRNet

TINY = dict(mid_channels=8, num_propagation_blocks=2, num_cleaning_blocks=2)


def tiny_net(seed: int = 0, **kwargs) -> RealBasicVSRNet:
    torch.manual_seed(seed)
    return RealBasicVSRNet(**{**TINY, **kwargs})


class CallCounter:
    """Counts forward calls of a module through a forward hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.count += 1


# --- layers -------------------------------------------------------------------------------------------------

def test_blocks_shapes():
    x = torch.rand(2, 8, 10, 12)
    assert ResidualBlockNoBN(mid_channels=8)(x).shape == (2, 8, 10, 12)
    assert ResidualBlocksWithInputConv(in_channels=8, out_channels=4, num_blocks=2)(x).shape == (2, 4, 10, 12)
    assert PixelShufflePack(in_channels=8, out_channels=3, scale_factor=2)(x).shape == (2, 3, 20, 24)


@pytest.mark.parametrize("size", [(64, 64), (50, 70), (33, 96)])
def test_spynet_shapes(size):
    torch.manual_seed(0)
    spynet = SPyNet()
    ref, supp = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    with torch.no_grad():
        flow = spynet(ref, supp)
    assert flow.shape == (2, 2, *size)
    assert torch.isfinite(flow).all()


def test_spynet_rejects_bad_input():
    with pytest.raises(InputError, match=r"\(n, 3, h, w\)"):
        SPyNet()(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 32))


def test_flow_warp_zero_flow_is_identity():
    x = torch.rand(2, 3, 9, 13)
    out = flow_warp(x, torch.zeros(2, 2, 9, 13))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_flow_warp_integer_shift():
    x = torch.rand(1, 2, 7, 10)
    flow = torch.zeros(1, 2, 7, 10)
    flow[:, 0] = 2.0   # sample 2 px to the right
    flow[:, 1] = -1.0  # and 1 px up
    out = flow_warp(x, flow)
    torch.testing.assert_close(out[:, :, 1:, :-2], x[:, :, :-1, 2:], atol=1e-6, rtol=0)
    assert out[:, :, 0].abs().max() == 0  # outside the frame: zeros padding
    assert out[:, :, :, -2:].abs().max() == 0


def test_flow_warp_rejects_mismatched_flow():
    with pytest.raises(InputError, match=r"\(n, 2, h, w\)"):
        flow_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8, 2))


# --- RealBasicVSRNet ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("b,t,h,w", [(1, 2, 64, 64), (2, 2, 17, 23), (1, 1, 64, 70), (1, 3, 65, 33)])
def test_net_output_shapes(b, t, h, w):
    net = tiny_net().eval()
    lq = torch.rand(b, t, 3, h, w)
    with torch.no_grad():
        sr, cleaned = net(lq, return_lqs=True)
    assert sr.shape == (b, t, 3, 4 * h, 4 * w)
    assert cleaned.shape == lq.shape
    assert torch.isfinite(sr).all()
    with torch.no_grad():
        assert net(lq).shape == sr.shape


@pytest.mark.parametrize("shape", [(3, 3, 64, 64), (1, 2, 1, 64, 64), (1, 2, 4, 64, 64), (1, 2, 64, 64, 3)])
def test_net_rejects_bad_layout(shape):
    with pytest.raises(InputError, match=r"\(b, t, 3, h, w\)"):
        tiny_net()(torch.rand(*shape))


def test_net_rejects_integer_input():
    with pytest.raises(InputError, match="float"):
        tiny_net()(torch.zeros(1, 2, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("thres,expected", [(255.0, 1), (0.0, MAX_CLEANING_PASSES)])
def test_dynamic_refinement_pass_count(thres, expected):
    net = tiny_net(dynamic_refine_thres=thres).eval()
    counter = CallCounter(net.cleaning)
    with torch.no_grad():
        net.clean(torch.rand(1, 2, 3, 32, 32))
    assert counter.count == expected


def test_dynamic_refinement_stops_when_residue_small():
    net = tiny_net().eval()
    lq = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        first = net.cleaning(rearrange(lq, "b t c h w -> (b t) c h w")).abs().mean().item() * 255
    net.dynamic_refine_thres = first * 0.999  # first pass residue is >= thres: a second pass runs
    counter = CallCounter(net.cleaning)
    with torch.no_grad():
        net.clean(lq)
    assert counter.count >= 2
    net.dynamic_refine_thres = first * 1.001  # first pass residue < thres: stop after one pass
    counter.count = 0
    with torch.no_grad():
        net.clean(lq)
    assert counter.count == 1


def test_sequential_cleaning_matches_batched():
    lq = torch.rand(2, 3, 3, 32, 32)
    batched = tiny_net(dynamic_refine_thres=0.0).eval()
    sequential = tiny_net(dynamic_refine_thres=0.0, is_sequential_cleaning=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(sequential.clean(lq), batched.clean(lq), atol=1e-5, rtol=1e-5)


def test_mirror_extended_clip_reuses_backward_flows():
    net = tiny_net().eval()
    frames = torch.rand(1, 2, 3, 64, 64)
    mirror = torch.cat([frames, frames.flip(1)], dim=1)  # f0 f1 f1 f0
    counter = CallCounter(net.spynet)
    with torch.no_grad():
        flows_forward, flows_backward = net.compute_flows(mirror)
        assert counter.count == 1
        net.compute_flows(torch.rand(1, 4, 3, 64, 64))
        assert counter.count == 3
        later = mirror[0, 1:]
        earlier = mirror[0, :-1]
        torch.testing.assert_close(flows_forward[0], net.spynet(later, earlier), atol=1e-4, rtol=1e-4)


def test_frozen_parts_and_gradients_reach_trainable_params():
    net = tiny_net().train()
    assert not any(p.requires_grad for p in net.spynet.parameters())
    lq = torch.rand(1, 2, 3, 64, 64, requires_grad=True)
    sr, cleaned = net(lq, return_lqs=True)
    (sr.mean() + cleaned.mean()).backward()
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(not name.startswith("spynet.") for name in trainable)
    no_grad = [name for name, p in trainable.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, f"no gradient for {no_grad}"
    assert lq.grad is not None and torch.isfinite(lq.grad).all()


def test_fix_cleaning_freezes_cleaning_module():
    net = tiny_net(is_fix_cleaning=True)
    assert not any(p.requires_grad for p in net.cleaning.parameters())
    assert all(p.requires_grad for p in net.backward_branch.parameters())


def test_seeded_determinism():
    lq = torch.rand(1, 2, 3, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(tiny_net(seed=3).eval()(lq), tiny_net(seed=3).eval()(lq), atol=0, rtol=0)


def test_full_size_net_shape_and_param_count():
    torch.manual_seed(0)
    net = RealBasicVSRNet().eval()
    assert sum(p.numel() for p in net.parameters()) == 6_294_834  # paper: ~6.3M
    with torch.no_grad():
        sr = net(torch.rand(1, 2, 3, 64, 64))
    assert sr.shape == (1, 2, 3, 256, 256)


# --- discriminator ------------------------------------------------------------------------------------------

def test_discriminator_shapes_and_gradients():
    torch.manual_seed(0)
    disc = UNetDiscriminatorSN(mid_channels=8)
    x = torch.rand(2, 3, 32, 40)
    logits = disc(x)
    assert logits.shape == (2, 1, 32, 40)
    logits.mean().backward()
    assert all(p.grad is not None for p in disc.parameters())
    assert disc(torch.rand(1, 2, 3, 16, 16)).shape == (1, 2, 1, 16, 16)
    assert {"conv_1.weight_orig", "conv_1.weight_u", "conv_1.weight_v", "conv_0.weight", "conv_9.bias"} <= set(
        disc.state_dict())


def test_discriminator_rejects_sizes_not_multiple_of_8():
    with pytest.raises(InputError, match="multiples of 8"):
        UNetDiscriminatorSN(mid_channels=8)(torch.rand(1, 3, 30, 32))
