"""benchmarks/upscale_a_video_sampling.py with tiny networks: the accounting its speed figures rest on.

The recorded figures come from full-size networks (hours on a CPU); here the same script runs with ``--tiny`` on a
real clip and its report is checked: one UNet call per step x temporal window x spatial tile, the projection to 30
steps, the real output written, and every figure of the markdown equal to the JSON.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from zoo.diffusion.tiles import plan_windows
from zoo.testing import sample_clip_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("uav_sampling_bench", ROOT / "benchmarks/upscale_a_video_sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_lq_clip_loops_real_frames(bench, tmp_path):
    from zoo.data.video_io import open_video

    source = open_video(sample_clip_dir()).read()
    folder = bench.make_lq_clip(sample_clip_dir(), tmp_path / "lq", frames=len(source) + 3, height=36, width=64)
    clip = open_video(folder).read()
    assert clip.shape == (len(source) + 3, 3, 36, 64)
    # back-and-forth loop: frame n is frame n-2 of the source, n+1 is n-3
    n = len(source)
    assert (clip[n] - clip[n - 2]).abs().max() == 0 and (clip[n + 1] - clip[n - 3]).abs().max() == 0
    assert (clip[n] - clip[n - 1]).abs().max() > 0.01  # real motion, not a frozen frame


def test_tiny_run_counts_every_window_and_tile(bench, tmp_path):
    frames, steps, height, width = 5, 2, 128, 136  # RAFT (propagation) needs 128 px
    argv = ["--tiny", "--frames", str(frames), "--steps", str(steps), "--propagation-steps", "1", "--size",
            f"{height}x{width}", "--window", "4", "--window-overlap", "1", "--tile", "96", "--tile-overlap", "32",
            "--output-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "upscale_a_video_sampling_cpu_tiny.json").read_text())
    assert report["command"].endswith(" ".join(argv))
    (r,) = report["results"]
    windows = len(plan_windows(frames, 4, 1))
    tiles = len(plan_windows(height, 96, 32)) * len(plan_windows(width, 96, 32))
    assert (windows, tiles) == (2, 4)
    assert r["phase_calls"]["unet"] == steps * windows * tiles  # guided: one batch of 2 per call
    assert r["phase_calls"]["text_encoder"] == 2  # prompt and negative prompt, once per clip
    assert r["phase_calls"]["vae_decode"] == 2 * tiles  # chunks of 3 frames: 3 + 2
    assert r["phase_calls"]["flow"] >= 1
    assert r["output_checked"] == {"frames": frames, "width": 4 * width, "height": 4 * height}
    assert r["step_s"] == pytest.approx(r["phase_s"]["unet"] / steps)
    assert r["projected_30_steps_s"] == pytest.approx(r["seconds"] + 28 * r["step_s"])
    assert r["rest_s"] == pytest.approx(r["seconds"] - sum(r["phase_s"].values()))
    assert r["peak_rss_mib"] >= r["rss_before_mib"] > 0
    markdown = (tmp_path / "upscale_a_video_sampling_cpu_tiny.md").read_text()
    assert "TINY" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {width}x{height} |"))
    assert f"| {r['seconds']:.1f} |" in row and f"{r['projected_30_steps_s_per_frame']:.1f} (projected)" in row
    assert f"{r['phase_s']['unet']:.1f} ({steps * windows * tiles})" in row
