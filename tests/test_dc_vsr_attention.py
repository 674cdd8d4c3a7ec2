"""DC-VSR's SAP, TAP and DSSAG attention processors against plain attention and hand-written references."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange

from zoo.errors import ConfigError
from zoo.hub import family
from zoo.models.dc_vsr.attention import PropagationAttnProcessor, PropagationControl, TileState, dssag_gamma, \
    install_processors, propagation_layers, spatial_self_attention_layers

torch.set_num_threads(1)
TINY = family("dc_vsr").variant("tiny")
FRAMES, H, W, C = 3, 4, 6, 32


def _attention(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=C, heads=2, dim_head=16).eval()


def _tokens(rows: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(rows * FRAMES, H * W, C, generator=torch.Generator().manual_seed(seed))


def _run(attn: Attention, control: PropagationControl, x: torch.Tensor, name: str = "layer") -> torch.Tensor:
    with torch.no_grad():
        return PropagationAttnProcessor(control, name, propagate=True)(attn, x)


def _plain(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return AttnProcessor2_0()(attn, x)


def _reference(attn: Attention, q_in: torch.Tensor, kv_in: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """softmax(gamma q k^T / sqrt(d)) v with per-head projections, written out."""
    heads = attn.heads
    q = rearrange(attn.to_q(q_in), "b n (h d) -> b h n d", h=heads)
    k = rearrange(attn.to_k(kv_in), "b m (h d) -> b h m d", h=heads)
    v = rearrange(attn.to_v(kv_in), "b m (h d) -> b h m d", h=heads)
    weights = torch.softmax(gamma * q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return attn.to_out[0](rearrange(weights @ v, "b h n d -> b n (h d)"))


def _tile(spans=((0, FRAMES), (0, H), (0, W)), shape=(FRAMES, H, W), key=(0, 0)) -> TileState:
    return TileState(spans=spans, shape=shape, key=key)


def test_inactive_processors_are_diffusers_default_attention_exactly():
    """Processors installed on every spatial self-attention layer, nothing active: the UNet output is bit-identical
    to the same UNet with diffusers' default processors."""
    torch.manual_seed(0)
    reference = UNetSpatioTemporalConditionModel(**{**TINY["unet"], "in_channels": 8, "out_channels": 4}).eval()
    torch.manual_seed(0)
    patched = UNetSpatioTemporalConditionModel(**{**TINY["unet"], "in_channels": 8, "out_channels": 4}).eval()
    control = PropagationControl()
    roles = install_processors(patched, control)
    assert len(roles) == len(spatial_self_attention_layers(patched)) == 4
    sample = torch.randn(1, 3, 8, 8, 8)
    kwargs = dict(encoder_hidden_states=torch.randn(1, 1, 32), added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]))
    with torch.no_grad():
        expected = reference(sample, 0.5, **kwargs).sample
        assert torch.equal(patched(sample, 0.5, **kwargs).sample, expected)
        control.sap = control.tap = control.dssag = False  # every switch off, a tile set, a mode chosen
        control.mode, control.gamma, control.uncond_rows, control.num_frames = "sap", 0.5, 1, 3
        control.tile = _tile(shape=(3, 8, 8), spans=((0, 3), (0, 8), (0, 8)))
        assert torch.equal(patched(sample, 0.5, **kwargs).sample, expected)


def test_propagation_layers_are_the_first_two_and_last_two_in_execution_order():
    unet = UNetSpatioTemporalConditionModel(**{**TINY["unet"], "in_channels": 8, "out_channels": 4})
    names = spatial_self_attention_layers(unet)
    # diffusers lists the mid block after the up blocks; it runs between them
    assert names == ["down_blocks.0.attentions.0.transformer_blocks.0.attn1",
                     "mid_block.attentions.0.transformer_blocks.0.attn1",
                     "up_blocks.1.attentions.0.transformer_blocks.0.attn1",
                     "up_blocks.1.attentions.1.transformer_blocks.0.attn1"]
    assert propagation_layers(unet, 1, 1) == [names[0], names[-1]]
    assert all("temporal" not in name for name in names)
    with pytest.raises(ConfigError, match="not spatial self-attention"):
        install_processors(unet, PropagationControl(), layers=["down_blocks.0.attentions.0.proj_in"])


def test_sap_with_every_token_of_a_single_tile_frame_equals_full_attention():
    """Stride 1 on a frame that is one tile: the extra keys are the tile's own tokens again, so the attention is the
    full attention (each key appears twice: the softmax weights are unchanged)."""
    attn, x = _attention(), _tokens()
    control = PropagationControl(sap_stride=1, mode="sap", num_frames=FRAMES, tile=_tile())
    out = _run(attn, control, x)
    torch.testing.assert_close(out, _plain(attn, x), rtol=1e-5, atol=1e-5)
    assert bool(control.stores["layer"].filled.all())


def test_sap_attends_to_the_subsampled_whole_frame_as_written_by_earlier_tiles():
    """Two tiles side by side: the right tile's keys are its own tokens plus the stride-2 subsample of the whole
    frame (its own region just written, the left region from the left tile)."""
    attn = _attention()
    width = 2 * W
    full = torch.randn(FRAMES, H, width, C, generator=torch.Generator().manual_seed(3))
    left, right = full[:, :, :W], full[:, :, W:]
    control = PropagationControl(sap_stride=2, mode="sap", num_frames=FRAMES)
    control.tile = _tile(spans=((0, FRAMES), (0, H), (0, W)), shape=(FRAMES, H, width))
    first = _run(attn, control, rearrange(left, "n y x c -> n (y x) c"))
    # the first tile sees the right half unwritten: those keys are masked, the written ones are its own subsample
    own_sub = rearrange(left[:, 1::2, 1::2], "n y x c -> n (y x) c")
    tokens_left = rearrange(left, "n y x c -> n (y x) c")
    torch.testing.assert_close(first, _reference(attn, tokens_left, torch.cat([tokens_left, own_sub], 1)),
                               rtol=1e-5, atol=1e-5)
    control.tile = _tile(spans=((0, FRAMES), (0, H), (W, width)), shape=(FRAMES, H, width), key=(0, 1))
    tokens_right = rearrange(right, "n y x c -> n (y x) c")
    out = _run(attn, control, tokens_right)
    whole_sub = rearrange(full[:, 1::2, 1::2], "n y x c -> n (y x) c")
    expected = _reference(attn, tokens_right, torch.cat([tokens_right, whole_sub], 1))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, _plain(attn, tokens_right), atol=1e-4)


def test_tap_carrying_nothing_equals_plain_attention_and_then_carries_the_top_std_frames():
    attn = _attention()
    control = PropagationControl(num_frames_kept=1, mode="tap", num_frames=FRAMES)
    x = _tokens()
    control.begin_tile(_tile(spans=((0, FRAMES), (0, H), (0, W)), shape=(2 * FRAMES, H, W)))
    torch.testing.assert_close(_run(attn, control, x), _plain(attn, x), rtol=1e-5, atol=1e-5)
    # the next tile in time at the same spatial position gets the frame of x whose keys vary most
    keys = attn.to_k(x).detach()
    kept = int(rearrange(keys, "n m c -> n (m c)").std(dim=1).argmax())
    y = _tokens(seed=5)
    control.begin_tile(_tile(spans=((FRAMES, 2 * FRAMES), (0, H), (0, W)), shape=(2 * FRAMES, H, W)))
    out = _run(attn, control, y)
    expected = _reference(attn, y, torch.cat([y, x[kept:kept + 1].expand(FRAMES, -1, -1)], 1))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # a new step forgets the carries
    control.begin_step("tap", None)
    control.begin_tile(_tile(spans=((FRAMES, 2 * FRAMES), (0, H), (0, W)), shape=(2 * FRAMES, H, W)))
    torch.testing.assert_close(_run(attn, control, y), _plain(attn, y), rtol=1e-5, atol=1e-5)


def test_dssag_gamma_one_is_plain_attention_and_gamma_below_one_changes_only_the_unconditional_rows():
    attn = _attention()
    x = _tokens(rows=2)  # rows: [unconditional clip, conditional clip]
    control = PropagationControl(gamma=1.0, uncond_rows=1, num_frames=FRAMES)
    torch.testing.assert_close(_run(attn, control, x), _plain(attn, x), rtol=1e-5, atol=1e-5)
    control.gamma = 0.3
    out = _run(attn, control, x)
    torch.testing.assert_close(out[FRAMES:], _plain(attn, x)[FRAMES:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:FRAMES], _reference(attn, x[:FRAMES], x[:FRAMES], gamma=0.3), rtol=1e-5,
                               atol=1e-5)
    assert not torch.allclose(out[:FRAMES], _plain(attn, x)[:FRAMES], atol=1e-4)


def test_dssag_schedule_and_step_alternation():
    values = [dssag_gamma(s, sigma_min=0.002, sigma_max=700.0, gamma_min=0.5, rho=0.5) for s in (700.0, 10.0, 0.002)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.5) and values[0] > values[1] > values[2]
    with pytest.raises(ConfigError, match="gamma_min"):
        dssag_gamma(1.0, sigma_min=0.002, sigma_max=700.0, gamma_min=0.0, rho=0.5)
    both = PropagationControl()
    assert [both.step_mode(i) for i in range(5)] == [("tap", False), ("sap", False), ("tap", True), ("sap", False),
                                                     ("tap", False)]
    assert [PropagationControl(sap=False).step_mode(i) for i in range(3)] == [("tap", False), ("tap", True),
                                                                            ("tap", False)]
    assert PropagationControl(sap=False, tap=False).step_mode(0) == (None, False)


def test_tap_steps_keep_the_sap_store_current_so_a_sap_step_sees_the_whole_frame():
    """A TAP step over two side-by-side tiles writes both into SAP's store; on the next (SAP) step the first tile
    already attends to the second tile's subsample, from the TAP step, unmasked."""
    attn = _attention()
    width = 2 * W
    full = torch.randn(FRAMES, H, width, C, generator=torch.Generator().manual_seed(4))
    halves = [rearrange(full[:, :, s], "n y x c -> n (y x) c") for s in (slice(0, W), slice(W, width))]
    control = PropagationControl(sap_stride=2, num_frames=FRAMES)
    tiles = [_tile(spans=((0, FRAMES), (0, H), (0, W)), shape=(FRAMES, H, width)),
             _tile(spans=((0, FRAMES), (0, H), (W, width)), shape=(FRAMES, H, width), key=(0, 1))]
    control.begin_step("tap", None)
    for tile, tokens in zip(tiles, halves):
        control.begin_tile(tile)
        _run(attn, control, tokens)
    assert bool(control.stores["layer"].filled.all())
    control.begin_step("sap", None)
    control.begin_tile(tiles[0])
    out = _run(attn, control, halves[0])
    whole_sub = rearrange(full[:, 1::2, 1::2], "n y x c -> n (y x) c")
    torch.testing.assert_close(out, _reference(attn, halves[0], torch.cat([halves[0], whole_sub], 1)), rtol=1e-5,
                               atol=1e-5)


def test_in_svd_the_propagation_layers_are_the_full_resolution_ends():
    """SVD img2vid's UNet (built on the meta device: no memory): 16 spatial self-attention layers; SAP/TAP act on
    both of the first down block and the last two of the last up block, all at the latent resolution."""
    from zoo.diffusion.bases import SVD_UNET

    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**SVD_UNET)
    assert len(spatial_self_attention_layers(unet)) == 16
    assert propagation_layers(unet) == [f"{block}.transformer_blocks.0.attn1" for block in (
        "down_blocks.0.attentions.0", "down_blocks.0.attentions.1", "up_blocks.3.attentions.1",
        "up_blocks.3.attentions.2")]
