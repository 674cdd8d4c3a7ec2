"""benchmarks/sateco_sampling.py with the tiny variant: the accounting its speed figures rest on.

The recorded figures come from full-size networks (an hour and more on a CPU); here the same script runs with
``--tiny`` on a real clip through ``upscale_video`` and its report is checked: one UNet call (and one latent-encoder
call) per denoising step x temporal window x latent tile, one VAE encode / guided decode per VAE chunk x tile, the
projection to the 25 steps of the defaults, the real mp4 written, and every figure of the markdown the same string
as in the JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from zoo.diffusion.tiles import plan_windows

from _tiny import json_numbers, numbers_in  # noqa: E402 - tests/ is on the path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    from _tiny import load_script

    return load_script("benchmarks/sateco_sampling.py")


def test_tiny_run_counts_every_window_and_tile(bench, tmp_path):
    frames, steps, strength, height, width = 4, 4, 0.5, 32, 40
    tile, tile_overlap, window, window_overlap, vae_chunk = 24, 8, 3, 1, 2
    argv = ["--tiny", "--frames", str(frames), "--steps", str(steps), "--strength", str(strength), "--size",
            f"{height}x{width}", "--tile", str(tile), "--tile-overlap", str(tile_overlap), "--window", str(window),
            "--window-overlap", str(window_overlap), "--vae-chunk", str(vae_chunk), "--threads", "1",
            "--output-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    json_path = tmp_path / "sateco_sampling_cpu_tiny.json"
    report = json.loads(json_path.read_text())
    assert report["command"].endswith("python benchmarks/sateco_sampling.py " + " ".join(argv))
    (r,) = report["results"]

    run = round(strength * steps)
    assert (r["steps_run"], r["default_steps"], r["default_strength"], r["default_steps_run"]) == (run, 50, 0.5, 25)
    # latent tiles: LQ px x 4 (upscaler) / 8 (VAE); latents of the 4x output
    latent_tile, latent_overlap = tile * 4 // 8, tile_overlap * 4 // 8
    windows = len(plan_windows(frames, window, window_overlap))
    tiles = len(plan_windows(4 * height // 8, latent_tile, latent_overlap)) * len(
        plan_windows(4 * width // 8, latent_tile, latent_overlap))
    assert (windows, tiles) == (2, 4)
    calls = r["phase_calls"]
    assert calls["unet"] == run * windows * tiles  # guidance 1: one batch of 1 per call
    assert calls["latent_encoder"] == calls["unet"]  # the guides of each window x tile, every step
    vae_calls = math.ceil(frames / vae_chunk) * tiles
    assert calls["vae_encode"] == calls["vae_encode_guides"] == calls["vae_decode"] == vae_calls
    lq_tiles = len(plan_windows(height, tile, tile_overlap)) * len(plan_windows(width, tile, tile_overlap))
    assert calls["upscaler"] == lq_tiles
    assert calls["refiner"] >= math.ceil(frames / vae_chunk)
    assert calls["text_encoder"] == 1  # the prompt once per streamed chunk; no negative prompt without guidance
    assert r["output_checked"] == {"frames": frames, "width": 4 * width, "height": 4 * height}

    # the arithmetic of the report (figures rounded to 0.01 s as stored)
    ph = r["phase_s"]
    assert r["step_s"] == pytest.approx((ph["unet"] + ph["latent_encoder"]) / run, abs=0.011)
    assert r["projected"] is True
    assert r["projected_s"] == pytest.approx(r["seconds"] + (25 - run) * r["step_s"], abs=0.011)
    assert r["projected_s_per_frame"] == pytest.approx(r["projected_s"] / frames, abs=0.006)
    assert r["s_per_frame"] == pytest.approx(r["seconds"] / frames, abs=0.006)
    assert r["rest_s"] == pytest.approx(r["seconds"] - sum(ph.values()), abs=0.011)
    assert sum(ph.values()) <= r["seconds"] + 0.05  # the timed pieces are not nested
    assert r["peak_rss_mib"] >= r["rss_before_mib"] > 0 and r["peak_method"] == "VmHWM"
    assert r["threads"] == 1

    markdown = (tmp_path / "sateco_sampling_cpu_tiny.md").read_text()
    assert "TINY" in markdown and "Random weights" in markdown
    assert f"Command: `{report['command']}`" in markdown
    assert f"`{bench.GPU_COMMAND}`" in markdown
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| LQ (WxH) |"))
    row = next(line for line in lines if line.startswith(f"| {width}x{height} |"))
    assert header.count("|") == row.count("|")
    assert f"| {r['seconds']} |" in row and f"| {r['step_s']} |" in row
    assert f"{r['projected_s']} / {r['projected_s_per_frame']} (projected)" in row
    assert f"| {ph['unet']} ({calls['unet']}) |" in row and f"| {ph['vae_decode']} ({vae_calls}) |" in row
    assert f"| {r['peak_rss_mib']} | {r['rss_before_mib']} | n/a |" in row
    # every figure of the table row and of the parameter counts is a number of the JSON, printed as stored
    stored = json_numbers(report)
    params = next(line for line in lines if line.startswith("Networks (M parameters):"))
    figures = numbers_in(row) + numbers_in(params.split(":", 1)[1])
    assert figures and not [n for n in figures if n not in stored], f"markdown figures not in the JSON: {figures}"
    # the markdown is a function of the JSON alone
    assert bench.main(["--render", str(json_path)]) == 0
    assert (tmp_path / "sateco_sampling_cpu_tiny.md").read_text() == markdown
