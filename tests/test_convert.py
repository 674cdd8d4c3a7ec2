"""Official RealBasicVSR checkpoint conversion and zoo.hub.load_pretrained.

The official network code is not part of this project, so the key map is checked against
``tests/data/realbasicvsr_official_keys.json``: the key names and shapes of mmediting 0.x
``RealBasicVSRNet().state_dict()`` and ``UNetDiscriminatorWithSpectralNorm(3, 64).state_dict()``, generated
from the official code by the (out-of-tree) parity script. Output parity with the official network was
checked by that script (max abs difference reported in the model README).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from zoo.errors import ConfigError, WeightsError
from zoo.hub import available_families, load_pretrained
from zoo.models.realbasicvsr.convert import (
    convert_official_checkpoint,
    convert_official_discriminator,
    official_key_map,
    to_official_state_dict,
)
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.models.realbasicvsr.net import RealBasicVSRNet

OFFICIAL = json.loads((Path(__file__).parent / "data" / "realbasicvsr_official_keys.json").read_text())
TINY = dict(mid_channels=8, num_propagation_blocks=2, num_cleaning_blocks=2)


def _random_state(shapes: dict[str, list[int]], seed: int) -> OrderedDict:
    generator = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(shape, generator=generator)) for k, shape in shapes.items())


@pytest.fixture(scope="module")
def official_ckpt() -> dict:
    """A fake full-size mmediting checkpoint whose generator and generator_ema differ."""
    generator = _random_state(OFFICIAL["generator"], seed=0)
    ema = _random_state(OFFICIAL["generator"], seed=1)
    state = OrderedDict()
    state.update((f"generator.{k}", v) for k, v in generator.items())
    state.update((f"generator_ema.{k}", v) for k, v in ema.items())
    state.update((f"discriminator.{k}", v) for k, v in _random_state(OFFICIAL["discriminator"], seed=2).items())
    state["perceptual_loss.vgg.vgg_layers.0.weight"] = torch.randn(64, 3, 3, 3)
    state["step_counter"] = torch.tensor([150000.0])
    return {"meta": {"mmedit_version": "0.14.0", "iter": 150000}, "state_dict": state}


@pytest.fixture(scope="module")
def official_file(official_ckpt, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "RealBasicVSR_x4.pth"
    torch.save(official_ckpt, path)
    return path


def test_key_map_matches_official_keys_and_shapes():
    key_map = official_key_map()
    assert set(key_map) == set(OFFICIAL["generator"])
    with torch.device("meta"):
        ours = RealBasicVSRNet().state_dict()
    assert sorted(key_map.values()) == sorted(ours)  # a bijection onto our keys
    wrong = {k: (shape, list(ours[key_map[k]].shape)) for k, shape in OFFICIAL["generator"].items()
             if list(ours[key_map[k]].shape) != shape}
    assert not wrong


def test_discriminator_keys_match_official():
    with torch.device("meta"):
        ours = UNetDiscriminatorSN().state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == OFFICIAL["discriminator"]


def test_conversion_uses_ema_by_default(official_ckpt):
    converted = convert_official_checkpoint(official_ckpt)
    key_map = official_key_map()
    state = official_ckpt["state_dict"]
    for official_key, ours in key_map.items():
        assert converted[ours] is state[f"generator_ema.{official_key}"]
    raw = convert_official_checkpoint(official_ckpt, use_ema=False)
    assert all(raw[ours] is state[f"generator.{k}"] for k, ours in key_map.items())


def test_load_pretrained_official_file(official_file, official_ckpt):
    net = load_pretrained("realbasicvsr", official_file, dynamic_refine_thres=5)
    assert isinstance(net, RealBasicVSRNet) and not net.training
    assert net.dynamic_refine_thres == 5.0
    state = official_ckpt["state_dict"]
    loaded = net.state_dict()
    for official_key, ours in official_key_map().items():
        assert torch.equal(loaded[ours], state[f"generator_ema.{official_key}"])
    raw = load_pretrained("realbasicvsr", official_file, use_ema=False)
    key = "basicvsr.conv_last.weight"
    assert torch.equal(raw.state_dict()["conv_last.weight"], state[f"generator.{key}"])
    assert not torch.equal(raw.state_dict()["conv_last.weight"], state[f"generator_ema.{key}"])


def test_bare_official_generator_state_dict(official_ckpt):
    bare = {k.removeprefix("generator_ema."): v for k, v in official_ckpt["state_dict"].items()
            if k.startswith("generator_ema.")}
    assert set(convert_official_checkpoint(bare)) == set(official_key_map().values())


def _ema_only(ckpt: dict) -> dict:
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("generator_ema.")}


def test_missing_key_raises(official_ckpt):
    state = _ema_only(official_ckpt)
    del state["generator_ema.basicvsr.fusion.bias"]
    with pytest.raises(WeightsError, match=r"missing.*basicvsr\.fusion\.bias"):
        convert_official_checkpoint({"state_dict": state})


def test_unexpected_key_raises(official_ckpt):
    state = _ema_only(official_ckpt)
    state["generator_ema.basicvsr.extra_conv.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"unexpected.*extra_conv"):
        convert_official_checkpoint({"state_dict": state})


def test_misshaped_key_raises(official_ckpt):
    state = _ema_only(official_ckpt)
    state["generator_ema.basicvsr.conv_hr.weight"] = torch.zeros(64, 64, 5, 5)
    with pytest.raises(WeightsError, match=r"mis-shaped.*conv_hr\.weight"):
        convert_official_checkpoint({"state_dict": state})


def test_missing_ema_copy_raises(official_ckpt):
    state = {k: v for k, v in official_ckpt["state_dict"].items() if not k.startswith("generator_ema.")}
    with pytest.raises(WeightsError, match="use_ema=False"):
        convert_official_checkpoint({"state_dict": state})
    assert convert_official_checkpoint({"state_dict": state}, use_ema=False)


def test_discriminator_conversion(official_ckpt):
    disc = UNetDiscriminatorSN()
    disc.load_state_dict(convert_official_discriminator(official_ckpt))
    with pytest.raises(WeightsError, match="discriminator"):
        convert_official_discriminator({"state_dict": _ema_only(official_ckpt)})


def test_round_trip_to_official_keys():
    with torch.device("meta"):
        state = RealBasicVSRNet().state_dict()
    assert set(to_official_state_dict(state)) == set(OFFICIAL["generator"])


def test_official_format_numeric_self_consistency(tmp_path):
    """A tiny net exported to the official format and loaded back gives the same, finite output."""
    torch.manual_seed(0)
    net = RealBasicVSRNet(**TINY).eval()
    official_state = to_official_state_dict(net.state_dict())
    ckpt = {"meta": {}, "state_dict": {**{f"generator.{k}": v + 1 for k, v in official_state.items()},
                                       **{f"generator_ema.{k}": v for k, v in official_state.items()},
                                       "step_counter": torch.zeros(1)}}
    path = tmp_path / "tiny_official.pth"
    torch.save(ckpt, path)
    loaded = load_pretrained("realbasicvsr", path)
    lq = torch.rand(1, 3, 3, 64, 72)
    with torch.no_grad():
        sr = loaded(lq)
        assert sr.shape == (1, 3, 3, 256, 288)
        assert torch.isfinite(sr).all()
        torch.testing.assert_close(sr, net(lq), atol=0, rtol=0)


# --- project Lightning checkpoints --------------------------------------------------------------------------

@pytest.mark.parametrize("net_spec,averaged_model", [
    ({"class_path": "zoo.models.realbasicvsr.net.RealBasicVSRNet",
      "init_args": {**TINY, "dynamic_refine_thres": 5.0, "spynet_pretrained": "/absent/spynet.pth"}}, True),
    ({**TINY, "dynamic_refine_thres": 5.0}, False),
])
def test_load_pretrained_lightning_checkpoint(tmp_path, net_spec, averaged_model):
    torch.manual_seed(0)
    raw, ema = RealBasicVSRNet(**TINY), RealBasicVSRNet(**TINY)
    ema_state = ema.state_dict()
    if averaged_model:  # EMA kept as torch.optim.swa_utils.AveragedModel(net)
        ema_state = torch.optim.swa_utils.AveragedModel(ema, use_buffers=True).state_dict()
        assert "n_averaged" in ema_state
    ckpt = {"state_dict": {**{f"net_g.{k}": v for k, v in raw.state_dict().items()},
                           **{f"net_g_ema.{k}": v for k, v in ema_state.items()},
                           "net_d.conv_0.weight": torch.zeros(8, 3, 3, 3)},
            "hyper_parameters": {"net": net_spec, "lr_g": 1e-4},
            "epoch": 0, "global_step": 10}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    net = load_pretrained("realbasicvsr", path)
    assert not net.training and net.dynamic_refine_thres == 5.0 and net.mid_channels == 8
    assert torch.equal(net.conv_last.weight, ema.conv_last.weight)
    assert load_pretrained("realbasicvsr", path, dynamic_refine_thres=1.5).dynamic_refine_thres == 1.5
    assert torch.equal(load_pretrained("realbasicvsr", path, use_ema=False).conv_last.weight, raw.conv_last.weight)
    ckpt["hyper_parameters"]["eval_dynamic_refine_thres"] = 1.5  # the system's evaluation setting wins over training's
    torch.save(ckpt, path)
    assert load_pretrained("realbasicvsr", path).dynamic_refine_thres == 1.5


def test_init_args_are_recorded():
    net = RealBasicVSRNet(**TINY, dynamic_refine_thres=5.0)
    assert net.init_args == {**TINY, "dynamic_refine_thres": 5.0, "is_fix_cleaning": False,
                             "is_sequential_cleaning": False, "spynet_pretrained": None}
    assert UNetDiscriminatorSN(mid_channels=8).init_args == {"in_channels": 3, "mid_channels": 8,
                                                             "skip_connection": True}


def test_bare_native_state_dict(tmp_path):
    net = RealBasicVSRNet(**TINY)
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)
    assert torch.equal(load_pretrained("realbasicvsr", path).fusion.weight, net.fusion.weight)


# --- wrong inputs -------------------------------------------------------------------------------------------

def test_lightning_checkpoint_of_another_family(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"net_g.encoder.0.weight": torch.zeros(4, 3, 3, 3)},
                "hyper_parameters": {"net": {"class_path": "zoo.models.other.net.OtherNet", "init_args": {}}}}, path)
    with pytest.raises(WeightsError, match="OtherNet"):
        load_pretrained("realbasicvsr", path)
    torch.save({"state_dict": {"net_g.encoder.0.weight": torch.zeros(4, 3, 3, 3)}, "hyper_parameters": {}}, path)
    with pytest.raises(WeightsError, match="RealBasicVSR"):
        load_pretrained("realbasicvsr", path)
    with pytest.raises(WeightsError, match="not an mmediting RealBasicVSR checkpoint"):
        convert_official_checkpoint(torch.load(path, weights_only=True))


def test_random_torch_file(tmp_path):
    path = tmp_path / "random.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="not a RealBasicVSR checkpoint"):
        load_pretrained("realbasicvsr", path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsError, match="not a RealBasicVSR checkpoint"):
        load_pretrained("realbasicvsr", path)


def test_non_torch_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path in (text, garbage, empty):
        with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
            load_pretrained("realbasicvsr", path)


def test_missing_path_and_bad_options(tmp_path):
    missing = tmp_path / "nope" / "RealBasicVSR_x4.pth"
    with pytest.raises(WeightsError, match="RealBasicVSR_x4.pth"):
        load_pretrained("realbasicvsr", missing)
    with pytest.raises(WeightsError, match="not a file"):
        load_pretrained("realbasicvsr", tmp_path)
    with pytest.raises(ConfigError, match="unknown family"):
        load_pretrained("nope", missing)
    path = tmp_path / "net.pth"
    torch.save(RealBasicVSRNet(**TINY).state_dict(), path)
    with pytest.raises(ConfigError, match="dynamic_refine_threshold"):
        load_pretrained("realbasicvsr", path, dynamic_refine_threshold=5)
    assert "realbasicvsr" in available_families()
