"""Every attention layer of the families runs through PyTorch's ``scaled_dot_product_attention`` (SDPA).

SDPA is what picks the fused kernels (flash / memory-efficient / cuDNN on CUDA); an attention that multiplies
``q k^T`` and calls softmax itself always runs the plain math. For the tiny variant of each family with attention
(Upscale-A-Video's UNet and VAE, SATeCo's UNet + adapters, VAE decoder + adapters and TMSA upscaler, DC-VSR's
spatio-temporal UNet with diffusers' processors and with DC-VSR's own, its temporal VAE, VideoGigaGAN's timm
attention) one forward runs with ``torch.nn.functional.scaled_dot_product_attention`` wrapped by a counter (every
module reads it from ``torch.nn.functional`` at call time: diffusers' ``AttnProcessor2_0``, our processors, timm's
``Attention`` when ``fused_attn``) and the softmax functions wrapped too; forward hooks on every attention module
attribute each call to the module that made it, and the profiler tells which kernel ran. Asserted: every attention
module made at least one SDPA call and no softmax call, no SDPA call fell back to the unfused math path, and no
diffusers processor is the explicit-softmax ``AttnProcessor``. Only modules that ran are asserted on: with one layer
per block, diffusers' ``MidBlockTemporalDecoder`` (DC-VSR's tiny VAE decoder) never calls its attention.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import pytest
import torch
from diffusers.models.attention_processor import Attention as DiffusersAttention
from diffusers.models.attention_processor import AttnProcessor
from einops import rearrange
from timm.layers import Attention as TimmAttention
from torch.nn import functional as F

from zoo.hub import family
from zoo.models.sateco.net import TMSABlock

torch.set_num_threads(1)

#: Key of :func:`attention_calls`' counts: SDPA calls that ran PyTorch's unfused math fallback (on the CPU: instead
#: of its fused flash kernel; a 3-d bias did that to Upscale-A-Video's temporal attention before it was made 4-d).
UNFUSED = "unfused sdpa calls"
#: The modules that compute attention: diffusers' and timm's layers, and SATeCo's TMSA block (it calls SDPA itself).
ATTENTION_MODULES = (DiffusersAttention, TimmAttention, TMSABlock)


@contextmanager
def attention_calls(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - yields a dict
    """Count, per attention module of ``model`` (by name), its forward calls, its SDPA calls and its explicit softmax
    calls."""
    names = {module: name for name, module in model.named_modules() if isinstance(module, ATTENTION_MODULES)}
    assert names, f"{type(model).__name__} has no attention module"
    counts = {name: {"calls": 0, "sdpa": 0, "softmax": 0} for name in names.values()}
    stack: list[str] = []

    def counted(kind: str, function):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if stack:
                counts[stack[-1]][kind] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted("sdpa", F.scaled_dot_product_attention))
    monkeypatch.setattr(F, "softmax", counted("softmax", F.softmax))
    monkeypatch.setattr(torch, "softmax", counted("softmax", torch.softmax))
    monkeypatch.setattr(torch.Tensor, "softmax", counted("softmax", torch.Tensor.softmax))
    def enter(module: torch.nn.Module, args: tuple) -> None:
        stack.append(names[module])
        counts[stack[-1]]["calls"] += 1

    def leave(module: torch.nn.Module, args: tuple, out: object) -> None:  # returns None: the output stays
        stack.pop()

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            yield counts
        counts[UNFUSED] = sum(e.count for e in prof.key_averages()
                              if e.key == "aten::_scaled_dot_product_attention_math")
    finally:
        for handle in handles:
            handle.remove()
        monkeypatch.undo()


def assert_all_sdpa(model: torch.nn.Module, counts: dict) -> None:
    """Every attention module that ran called SDPA (at least once per forward) and no softmax; no diffusers
    processor of ``model`` is the explicit-softmax one (those that did not run included)."""
    assert counts.get(UNFUSED) == 0, f"{counts.get(UNFUSED)} SDPA calls ran the unfused math path"
    counts = {name: c for name, c in counts.items() if name != UNFUSED}
    ran = [name for name, c in counts.items() if c["calls"]]
    assert ran, "no attention module ran"
    missed = [name for name in ran if counts[name]["sdpa"] < counts[name]["calls"]]
    assert not missed, f"attention modules that did not call SDPA: {missed}"
    explicit = [name for name, c in counts.items() if c["softmax"]]
    assert not explicit, f"attention modules that called softmax themselves: {explicit}"
    processors = {name: type(m.processor).__name__ for name, m in model.named_modules()
                  if isinstance(m, DiffusersAttention)}
    plain = [name for name, m in model.named_modules()
             if isinstance(m, DiffusersAttention) and type(m.processor) is AttnProcessor]
    assert not plain, f"explicit-softmax AttnProcessor on {plain} ({processors})"
    timm_plain = [name for name, m in model.named_modules() if isinstance(m, TimmAttention) and not m.fused_attn]
    assert not timm_plain, f"timm Attention without fused_attn: {timm_plain}"


def test_upscale_a_video_unet_and_vae(monkeypatch):
    from zoo.diffusion.attention import TemporalAttnProcessor, attention_processors
    from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE

    tiny = family("upscale_a_video").variant("tiny")
    torch.manual_seed(0)
    unet = UpscaleAVideoUNet(**tiny["unet"]).eval()
    processors = attention_processors(unet)
    assert any(isinstance(p, TemporalAttnProcessor) for p in processors.values())
    g = torch.Generator().manual_seed(1)
    inputs = dict(latents=torch.randn(1, 3, 4, 16, 16, generator=g), lq=torch.rand(1, 3, 3, 16, 16, generator=g),
                  timestep=torch.tensor([900]), noise_level=torch.tensor([120]),
                  encoder_hidden_states=torch.randn(1, 5, 32, generator=g))
    with torch.no_grad(), attention_calls(unet, monkeypatch) as counts:
        unet(**inputs)
    assert len(counts) - 1 == len(processors)  # every layer attention_processors lists was watched ...
    assert all(c["calls"] for name, c in counts.items() if name != UNFUSED)  # ... and ran
    assert_all_sdpa(unet, counts)

    vae = UpscaleAVideoVAE(**tiny["vae"]).eval()
    with torch.no_grad(), attention_calls(vae, monkeypatch) as counts:
        vae.decode(torch.randn(1, 2, 4, 8, 8, generator=g), torch.rand(1, 2, 3, 8, 8, generator=g))
        vae.encode(torch.rand(1, 2, 3, 32, 32, generator=g))
    assert_all_sdpa(vae, counts)


def test_sateco_unet_adapters_vae_and_upscaler(monkeypatch):
    from zoo.models.sateco.load import build_pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-base warning
        torch.manual_seed(0)
        pipe = build_pipeline(None, variant="tiny")
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(1, 3, 4, 8, 8, generator=g), torch.randn(1, 3, 4, 8, 8, generator=g)
    text = torch.randn(1, 77, pipe.cross_attention_dim, generator=g)
    with torch.no_grad(), attention_calls(pipe, monkeypatch) as counts:
        pipe.unet_prediction(x, torch.tensor([500]), z=z, text=text)
        pipe.decode_guided(z, torch.rand(1, 3, 3, 64, 64, generator=g) * 2 - 1)
        pipe.upscaler(torch.rand(1, 3, 3, 16, 16, generator=g))
    assert any(".tfa." in name or "tfa" in name for name in counts), sorted(counts)[:5]
    assert_all_sdpa(pipe, counts)


@pytest.mark.parametrize("processors", ["diffusers", "dc_vsr"])
def test_dc_vsr_unet_and_vae(monkeypatch, processors):
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from zoo.models.dc_vsr.attention import PropagationAttnProcessor, PropagationControl, install_processors

    tiny = family("dc_vsr").variant("tiny")
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(**{**tiny["unet"], "in_channels": 8, "out_channels": 4}).eval()
    control = None
    if processors == "dc_vsr":
        # DSSAG active (gamma != 1 on the unconditional clip): the processors compute attention themselves
        control = PropagationControl(gamma=0.5, uncond_rows=1, num_frames=3)
        roles = install_processors(unet, control)
        assert roles and all(isinstance(unet.get_submodule(name).processor, PropagationAttnProcessor)
                             for name in roles)
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 3, 8, 8, 8, generator=g)
    kwargs = dict(encoder_hidden_states=torch.randn(2, 1, 32, generator=g),
                  added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]).repeat(2, 1))
    with torch.no_grad(), attention_calls(unet, monkeypatch) as counts:
        unet(sample, 0.5, **kwargs)
    assert_all_sdpa(unet, counts)

    if processors == "diffusers":
        vae = AutoencoderKLTemporalDecoder(**tiny["vae"]).eval()
        with torch.no_grad(), attention_calls(vae, monkeypatch) as counts:
            latents = vae.encode(torch.rand(3, 3, 32, 32, generator=g) * 2 - 1).latent_dist.mode()
            vae.decode(latents, num_frames=3)
        assert_all_sdpa(vae, counts)


def test_videogigagan_timm_attention(monkeypatch):
    from _tiny import tiny_net  # noqa: E402 - tests/ is on the path

    torch.manual_seed(0)
    net = tiny_net().eval()
    assert sum(isinstance(m, TimmAttention) for m in net.modules()) >= 2  # spatial and temporal
    with torch.no_grad(), attention_calls(net, monkeypatch) as counts:
        net(torch.rand(1, 3, 3, 16, 16))
    assert_all_sdpa(net, counts)


def test_the_counter_sees_an_explicit_softmax_attention(monkeypatch):
    """The check can fail: diffusers' explicit-softmax ``AttnProcessor`` is caught by both the SDPA count and the
    softmax count."""
    torch.manual_seed(0)
    layer = DiffusersAttention(query_dim=16, heads=2, dim_head=8, processor=AttnProcessor()).eval()
    with torch.no_grad(), attention_calls(layer, monkeypatch) as counts:
        layer(torch.randn(1, 6, 16))
    assert counts[""] == {"calls": 1, "sdpa": 0, "softmax": 1}
    assert counts[UNFUSED] == 0
    with pytest.raises(AssertionError, match="did not call SDPA"):
        assert_all_sdpa(layer, counts)
    q = rearrange(torch.randn(2, 6, 16), "b n (h d) -> b h n d", h=2)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, q, q), (q @ q.transpose(-1, -2) / 8**0.5)
                               .softmax(-1) @ q)


def test_a_three_d_bias_is_caught_as_unfused(monkeypatch):
    """The kernel check can fail: a (heads, t, t) bias makes SDPA run its math path on the CPU, a (1, heads, t, t)
    one the fused kernel, with the same result."""
    torch.manual_seed(0)
    layer = DiffusersAttention(query_dim=16, heads=2, dim_head=8).eval()
    q, bias = torch.randn(3, 2, 5, 8), torch.randn(2, 5, 5)
    with attention_calls(layer, monkeypatch) as counts:
        three_d = F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
    assert counts[UNFUSED] == 1
    with attention_calls(layer, monkeypatch) as counts:
        four_d = F.scaled_dot_product_attention(q, q, q, attn_mask=bias[None])
    assert counts[UNFUSED] == 0
    torch.testing.assert_close(four_d, three_d)
