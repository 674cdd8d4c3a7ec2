"""Output parity of the RealBasicVSR generator and discriminator with the official mmediting 0.x networks.

Where the data come from: ``benchmarks/parity/realbasicvsr_official.py`` (not run by CI) ran the official network
files of mmediting 0.x (commit 6f2f3ae2, unmodified, with mmcv 1.7.2 and the project's torch) in a separate Python
process. It built a tiny official ``RealBasicVSRNet`` (8 channels, 2 + 2 residual blocks, the full fixed-size SPyNet)
and ``UNetDiscriminatorWithSpectralNorm`` (4 channels), gave every parameter seeded random values, and saved them the
way the released ``RealBasicVSR_x4.pth`` is saved: ``generator.*``, ``generator_ema.*`` (different weights; the
frozen SPyNet is the same in both), ``discriminator.*`` and ``step_counter``. That file (6.5 MB) is not committed;
the record holds its key list, ``meta``, the values that are not seeded draws and the SHA-256 of its tensors, and
the module fixture below rebuilds it from the seeds with the recorder's own function (the digest must match). It then ran the official networks on real frames (crops of the embedded sample clip, reduced
x4 and rounded to 8 bits) and wrote ``tests/data/parity/realbasicvsr_official.pt``: the input clips, and per run
(EMA or raw generator, ``dynamic_refine_thres``, clip) the official output at every 7th or 11th row and column plus
the last ones, the cleaned frames likewise, per-frame means of the full outputs, how many cleaning passes ran, and
the discriminator's outputs in eval and training mode.

Here that checkpoint goes through the project's loader and converters as a user's file would, the project's
networks run on the same inputs, and every recorded value must agree within 1e-5 (max abs error; the values are
of order 1). The runs cover a batch of two 64x64 clips with 1, 2 and 3 cleaning passes, the raw generator, a
70x93 clip with the mmediting test threshold 5 and a mirror-extended clip (forward flows not recomputed).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tiny import load_script

from zoo.hub import load_pretrained
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.models.realbasicvsr.convert import convert_official_checkpoint, convert_official_discriminator
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.weights import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECORD = torch.load(ROOT / "tests/data/parity/realbasicvsr_official.pt", weights_only=True)
RUNS = {run["name"]: run for run in RECORD["runs"]}
TOLERANCE = 1e-5
#: A perturbation must move the output by this much (100x the tolerance) for the comparison to mean something.
SENSITIVITY = 100 * TOLERANCE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The official-format checkpoint, regenerated from the seeds (SHA-256 of its tensors checked)."""
    script = load_script("benchmarks/parity/realbasicvsr_official.py")
    return script.regenerate_checkpoint(RECORD["meta"], tmp_path_factory.mktemp("rbvsr") / "RealBasicVSR_x4.pth")


def _lq(run: dict) -> torch.Tensor:
    return RECORD["clips"][run["clip"]].float() / 255


def _sampled(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return x[..., rows, :][..., cols]


def _stats(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return torch.stack([x.mean(dim=(-2, -1)), x.abs().mean(dim=(-2, -1))], dim=-1)


def _max_error(sr: torch.Tensor, cleaned: torch.Tensor, run: dict) -> float:
    """Max abs difference from the official values of ``run`` (sampled output and cleaned frames)."""
    assert tuple(sr.shape) == tuple(run["sr_shape"])
    return max(float((_sampled(sr, run["sr_rows"], run["sr_cols"]) - run["sr"]).abs().max()),
               float((_sampled(cleaned, run["lq_rows"], run["lq_cols"]) - run["cleaned"]).abs().max()))


class _Calls:
    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.count += 1


def test_checkpoint_is_the_recorded_official_layout(checkpoint):
    ckpt = read_checkpoint(checkpoint)
    assert set(ckpt) == {"meta", "state_dict"} and ckpt["meta"]["mmcv_version"] == "1.7.2"
    state = ckpt["state_dict"]
    assert {k.split(".")[0] for k in state} == {"generator", "generator_ema", "discriminator", "step_counter"}
    raw = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    ema = {k.removeprefix("generator_ema."): v for k, v in state.items() if k.startswith("generator_ema.")}
    assert raw.keys() == ema.keys()
    for key in raw:
        assert torch.equal(raw[key], ema[key]) == (".spynet." in key), key  # only the frozen SPyNet is shared


@pytest.mark.parametrize("name", list(RUNS))
def test_generator_matches_the_official_generator(name, checkpoint):
    run = RUNS[name]
    net = load_pretrained("realbasicvsr", checkpoint, use_ema=run["use_ema"],
                          dynamic_refine_thres=run["dynamic_refine_thres"])
    cleaning, spynet = _Calls(net.cleaning), _Calls(net.spynet)
    with torch.no_grad():
        sr, cleaned = net(_lq(run), return_lqs=True)
    assert cleaning.count == run["cleaning_passes"]
    assert spynet.count == (1 if run["mirror_extended"] else 2)
    error = _max_error(sr, cleaned, run)
    assert error <= TOLERANCE, f"{name}: max abs error {error:.2e} > {TOLERANCE:.0e}"
    torch.testing.assert_close(_stats(sr), run["sr_stats"], atol=1e-6, rtol=0)
    torch.testing.assert_close(_stats(cleaned), run["cleaned_stats"], atol=1e-6, rtol=0)


def test_runs_exercise_distinct_paths():
    """The recorded cases differ from each other (pass counts, EMA vs raw), so each one checks something."""
    passes = {name: run["cleaning_passes"] for name, run in RUNS.items()}
    assert passes["ema_batch64_thres255"] == 1 and passes["ema_batch64_two_pass"] == 2
    assert passes["ema_batch64_thres0"] == 3 and passes["ema_odd70x93_thres5"] == 2
    assert RUNS["ema_mirror64x80_thres255"]["mirror_extended"]
    one = RUNS["ema_batch64_thres255"]
    for other in ("ema_batch64_two_pass", "ema_batch64_thres0", "raw_batch64_thres255"):
        assert float((one["sr_stats"] - RUNS[other]["sr_stats"]).abs().max()) > SENSITIVITY, other


def test_converter_functions_give_the_same_generator(checkpoint):
    run = RUNS["ema_batch64_two_pass"]
    ckpt = read_checkpoint(checkpoint)
    net = RealBasicVSRNet(**RECORD["meta"]["generator_config"], dynamic_refine_thres=run["dynamic_refine_thres"])
    net.load_state_dict(convert_official_checkpoint(ckpt, use_ema=True, net=net))
    with torch.no_grad():
        sr, cleaned = net.eval()(_lq(run), return_lqs=True)
    assert _max_error(sr, cleaned, run) <= TOLERANCE


@pytest.mark.parametrize("parameter,channel", [
    ("cleaning.features.blocks.1.conv2.weight", 3),
    ("spynet.levels.5.0.weight", 0),  # finest flow level
    ("backward_branch.blocks.0.conv1.weight", 2),
    ("upsample2.conv.weight", 100),
])
def test_generator_comparison_is_sensitive(parameter, channel, checkpoint):
    """Nudging one output filter of any part of the network (by 0.05 per weight) moves the compared values."""
    run = RUNS["ema_batch64_thres255"]
    net = load_pretrained("realbasicvsr", checkpoint, dynamic_refine_thres=run["dynamic_refine_thres"])
    with torch.no_grad():
        net.get_parameter(parameter)[channel] += 0.05
        sr, cleaned = net(_lq(run), return_lqs=True)
    assert _max_error(sr, cleaned, run) > SENSITIVITY


def _discriminator(checkpoint: Path) -> UNetDiscriminatorSN:
    disc = UNetDiscriminatorSN(**RECORD["meta"]["discriminator_config"])
    disc.load_state_dict(convert_official_discriminator(read_checkpoint(checkpoint)))
    return disc


def test_discriminator_matches_the_official_discriminator(checkpoint):
    d = RECORD["discriminator"]
    x = d["input"].float() / 255
    disc = _discriminator(checkpoint)
    with torch.no_grad():
        eval_error = float((disc.eval()(x) - d["eval"]).abs().max())
        train_error = float((disc.train()(x) - d["train"]).abs().max())  # one power iteration, as officially
    assert eval_error <= TOLERANCE and train_error <= TOLERANCE, (eval_error, train_error)
    state = disc.state_dict()
    for key, u in d["train_weight_u"].items():
        torch.testing.assert_close(state[key], u, atol=TOLERANCE, rtol=0)
    assert float((d["eval"] - d["train"]).abs().max()) < 1e-2  # converged power iteration: a small change


def test_discriminator_comparison_is_sensitive(checkpoint):
    d = RECORD["discriminator"]
    disc = _discriminator(checkpoint).eval()
    with torch.no_grad():
        disc.conv_3.weight_orig[5] += 0.05
        assert float((disc(d["input"].float() / 255) - d["eval"]).abs().max()) > SENSITIVITY
