"""The inference fast paths of issue 15: ``dtype='auto'`` (bf16 on CUDA, fp32 on CPU), channels-last weights,
``torch.compile`` of a net's parts, the bf16 tolerance on a real crop, and what ``vsrzoo upscale`` and the resume
work folder make of them. CPU only: CUDA is only ever reported available through monkeypatching."""
from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _tiny import load_script
from einops import rearrange
from torch import nn

import zoo
import zoo.inference
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.inference import (COMPILE_MODES, compile_network, compile_targets, prepare_network, resolve_device,
                           resolve_precision, to_channels_last, upscale_video)
from zoo.testing import sample_clip_dir, write_small_real_mp4

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    """benchmarks/precision.py as a module (its real crop, uint8 comparison and tolerance)."""
    return load_script("benchmarks/precision.py")


def _tiny(name: str, **overrides):  # noqa: ANN003, ANN202
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zoo.load_pretrained(name, None, variant="tiny", **overrides)


# ------------------------------------------------------------------------------------------------- dtype auto
def test_auto_is_fp32_on_cpu_and_bf16_when_cuda_is_there(monkeypatch):
    assert resolve_precision("cpu", "auto") == "fp32"
    assert resolve_precision(torch.device("mps"), "auto") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16" and resolve_precision("cpu", "fp32") == "fp32"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("cpu", "fp16")
    with pytest.raises(ConfigError, match="dtype"):
        resolve_precision("cpu", "int8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert resolve_precision(device, "auto") == "bf16"
    assert resolve_precision(resolve_device("cuda:0"), "fp16") == "fp16"
    assert resolve_precision(device, "fp32") == "fp32"  # the opt-out


# ---------------------------------------------------------------------------------------------- channels_last
@pytest.mark.parametrize("name", ["realbasicvsr", "upscale_a_video"])
def test_channels_last_converts_4d_weights_only_and_keeps_the_output(name):
    net = _tiny(name, **({"num_inference_steps": 2} if name == "upscale_a_video" else {}))
    lq = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    eager = copy.deepcopy(net)
    with torch.no_grad():
        expected = eager(lq)
    five_d = [p for p in net.parameters() if p.ndim == 5]
    if name == "upscale_a_video":
        assert five_d  # the UNet's 3-D convolutions: why Module.to(memory_format=...) cannot be used
        with pytest.raises(RuntimeError):
            copy.deepcopy(net).to(memory_format=torch.channels_last)
    keys = list(net.state_dict())
    run = prepare_network(net, "cpu", dtype="fp32", channels_last=True)
    four_d = [p for p in net.parameters() if p.ndim == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    assert any(not p.is_contiguous() for p in four_d)  # the layout really changed
    assert all(p.is_contiguous() for p in net.parameters() if p.ndim == 5)
    assert list(net.state_dict()) == keys
    with torch.no_grad():
        out = run(lq)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_to_channels_last_counts_and_leaves_other_tensors():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 4, 3), nn.Linear(4, 4))
    net.register_buffer("kernel", torch.rand(2, 3, 4, 5))
    assert to_channels_last(net) == 2  # the Conv2d weight and the 4-D buffer
    assert net.kernel.is_contiguous(memory_format=torch.channels_last) and not net.kernel.is_contiguous()
    assert net[1].weight.is_contiguous() and net[2].weight.is_contiguous()


# ---------------------------------------------------------------------------------------------------- compile
class _Recorder:
    """Stands in for torch.compile: records what is compiled and with which options, returns it unchanged."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, dict]] = []

    def __call__(self, fn, **kwargs):  # noqa: ANN001, ANN003, ANN204
        self.calls.append((fn, kwargs))
        return fn


@pytest.mark.parametrize("name, expected", [
    ("realbasicvsr", ["cleaning", "spynet", "backward_branch", "forward_branch", "fusion", "upsample1", "upsample2",
                      "conv_hr", "conv_last"]),
    ("realesrgan", ["net"]),
    ("upscale_a_video", ["pipeline.unet"]),
    ("sateco", ["pipeline.unet"]),
    ("dc_vsr", ["pipeline.unet"]),
])
def test_compile_wraps_the_parts_not_the_recurrence_or_the_sampler(name, expected, monkeypatch):
    net = _tiny(name)
    recorder = _Recorder()
    monkeypatch.setattr(torch, "compile", recorder)
    keys = list(net.state_dict())
    assert compile_targets(net) == expected
    prepare_network(net, "cpu", compile_mode="max-autotune")
    compiled = [fn.__self__ for fn, _ in recorder.calls]
    assert compiled == [net.get_submodule(target) for target in expected]
    assert all(kwargs == {"mode": "max-autotune", "dynamic": None} for _, kwargs in recorder.calls)
    assert list(net.state_dict()) == keys  # no _orig_mod. prefixes: checkpoints and the resume fingerprint unchanged
    prepare_network(net, "cpu", compile_mode="max-autotune")  # batch runs prepare the same net again: no-op
    assert len(recorder.calls) == len(expected)
    compile_network(net, "default")  # another mode: compiled again from the eager forward
    assert [fn for fn, _ in recorder.calls[len(expected):]] == [fn for fn, _ in recorder.calls[:len(expected)]]


def test_videogigagan_compiles_the_per_frame_parts_of_its_propagation(monkeypatch):
    net = _tiny("videogigagan")
    monkeypatch.setattr(torch, "compile", _Recorder())
    targets = compile_targets(net)
    assert "propagation" not in targets and {"propagation.spynet", "propagation.backward_branch"} <= set(targets)
    assert "encoder" not in targets and "encoder.0" in targets  # a ModuleList has no forward: its items
    compile_network(net)
    assert "forward" in net.get_submodule("propagation.spynet").__dict__
    assert "forward" not in net.propagation.__dict__ and "forward" not in net.__dict__


def test_unknown_compile_mode_and_bad_declared_target_are_refused():
    net = _tiny("realesrgan")
    with pytest.raises(ConfigError, match="compile mode must be one of"):
        prepare_network(net, "cpu", compile_mode="fastest")

    class Declares(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def compile_targets(self) -> list[str]:
            return ["conv", "missing"]

    with pytest.raises(ConfigError, match="'missing'"):
        compile_network(Declares())
    assert set(COMPILE_MODES) == {"default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"}


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="inductor needs a C compiler on the CPU")
def test_compiled_real_esrgan_equals_eager_on_cpu():
    """A real inductor compilation (about 20 s on 2 cores): the compiled tiny Real-ESRGAN gives eager's output."""
    net = _tiny("realesrgan")
    eager = copy.deepcopy(net)
    lq = torch.rand(1, 2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    run = prepare_network(net, "cpu", compile_mode="default")
    with torch.no_grad():
        expected = eager(lq)
        out = run(lq)
        again = run(lq)  # the same shape: the compiled graph again
    assert "forward" in net.net.__dict__
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- bf16 tolerance
@pytest.mark.parametrize("name", ["realesrgan_released", "realbasicvsr", "videogigagan",
                                  "upscale_a_video", "sateco", "dc_vsr"])
def test_bf16_stays_within_the_tolerance_of_fp32_on_a_real_crop(name, bench):
    """The property the bf16 default rests on, on real footage: PSNR(bf16, fp32) >= the documented tolerance."""
    if name == "realesrgan_released":
        net = zoo.load_pretrained("realesrgan", "x4plus")
    else:
        net = _tiny(name, **({"num_inference_steps": 4} if name in bench.DIFFUSION else {}))
    lq = bench.real_crop(size=32, frames=3)
    with torch.no_grad():
        fp32 = prepare_network(net, "cpu", dtype="fp32")(lq)
        bf16 = prepare_network(net, "cpu", dtype="bf16")(lq)
    figures = bench.compare_uint8(fp32, bf16)
    assert figures["psnr_db"] >= bench.TOLERANCE_DB, figures
    if name == "realesrgan_released":
        assert figures["max_abs_levels"] > 0  # bf16 really ran: a trained net's output moves a little


def test_compare_uint8_figures(bench):
    a = torch.zeros(1, 2, 3, 4, 4)
    b = a.clone()
    assert bench.compare_uint8(a, b)["psnr_db"] == float("inf")
    b[0, 1, 0, 0, 0] = 10 / 255
    figures = bench.compare_uint8(a, b)
    mse = 100 / (2 * 3 * 16)
    assert figures["max_abs_levels"] == 10 and figures["psnr_db"] == pytest.approx(10 * torch.log10(
        torch.tensor(255.0 ** 2 / mse)).item())
    assert figures["min_frame_psnr_db"] < figures["psnr_db"]
    crop = bench.real_crop(size=16, frames=2)
    assert crop.shape == (1, 2, 3, 16, 16) and 0 <= crop.min() and crop.max() <= 1 and crop.std() > 0.01


# ------------------------------------------------------------------------------------- upscale_video and CLI
class _Conv2x(nn.Module):
    """A per-frame net with a real 2-D convolution; raises KeyboardInterrupt at call ``stop_at`` (0-based)."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.stop_at, self.calls = stop_at, 0

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        out = F.interpolate(frames + 0.01 * self.conv(frames), scale_factor=2)
        return rearrange(out, "(b t) c h w -> b t c h w", b=lq.shape[0])


def test_resume_key_holds_the_resolved_dtype_channels_last_and_compile(tmp_path, monkeypatch):
    out = tmp_path / "out"
    options = dict(scale=2, chunk_frames=2, overlap=0, as_frames=True, progress=False, max_frames=4,
                   scene_split=False, checkpoint=True, device="cpu")
    with pytest.raises(KeyboardInterrupt):  # stopped after the first of two chunks: the work folder is kept
        upscale_video(_Conv2x(stop_at=1), sample_clip_dir(), out, dtype="auto", **options)
    assert zoo.inference.work_folder(out).is_dir()
    for change, named in ((dict(channels_last=True), "channels_last"), (dict(compile_mode="default"), "compile_mode"),
                          (dict(dtype="bf16"), "dtype")):
        monkeypatch.setattr(torch, "compile", _Recorder())  # the refusal comes before any compilation
        with pytest.raises(ConfigError, match=f"cannot resume.*{named}"):
            upscale_video(_Conv2x(), sample_clip_dir(), out, resume=True, **options, **change)
    summary = upscale_video(_Conv2x(), sample_clip_dir(), out, resume=True, dtype="fp32", **options)
    assert summary["resumed_chunks"] == 1 and summary["dtype"] == "fp32"  # 'auto' on a CPU was fp32


def test_upscale_video_reports_the_resolved_dtype_and_runs_channels_last(tmp_path):
    net = _Conv2x()
    common = dict(scale=2, chunk_frames=2, overlap=0, as_frames=True, progress=False, max_frames=2, scene_split=False)
    plain = upscale_video(net, sample_clip_dir(), tmp_path / "a", **common)
    assert plain["dtype"] == "fp32"
    fast = upscale_video(net, sample_clip_dir(), tmp_path / "b", channels_last=True, **common)
    assert fast["dtype"] == "fp32" and net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    for name in ("00000000.png", "00000001.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cli_accepts_dtype_auto_and_the_fast_path_flags(tmp_path, capsys, monkeypatch):
    video = write_small_real_mp4(tmp_path / "in.mp4", height=32, width=32, num_frames=3)
    recorder = _Recorder()
    monkeypatch.setattr(torch, "compile", recorder)
    argv = ["upscale", str(video), "-o", str(tmp_path / "sr.mp4"), "--random-weights", "--variant", "tiny",
            "--device", "cpu", "--no-progress", "--dtype", "auto", "--channels-last", "--compile"]
    assert main(argv) == 0, capsys.readouterr().err
    assert ", fp32" in capsys.readouterr().out
    assert recorder.calls and all(kwargs["mode"] == "default" for _, kwargs in recorder.calls)
    assert main(["upscale", str(video), "-o", str(tmp_path / "sr2.mp4"), "--random-weights", "--variant", "tiny",
                 "--device", "cpu", "--no-progress", "--compile", "fastest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: compile mode must be one of") and len(err.splitlines()) == 1
