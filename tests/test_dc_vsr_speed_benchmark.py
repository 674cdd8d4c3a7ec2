"""benchmarks/dc_vsr_sampling.py with the tiny variant: the accounting its speed and memory figures rest on.

The recorded figures come from full-size SVD networks (an hour on a CPU); here the same script runs with ``--tiny`` on
a real clip through ``upscale_video`` at two frame sizes and its report is checked: one UNet call per denoising step x
spatio-temporal tile (both guidance branches in one batch), one VAE encode and decode per VAE chunk x tile, the
projection to the 25 steps of the defaults, the real mp4 written, and every figure of the markdown the same string as
in the JSON.
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

    return load_script("benchmarks/dc_vsr_sampling.py")


def test_tiny_run_counts_every_tile_at_two_sizes(bench, tmp_path):
    frames, steps, tile, tile_overlap, window, window_overlap = 4, 2, 8, 4, 2, 1
    vae_tile, vae_overlap, vae_chunk = 8, 2, 2
    argv = ["--tiny", "--sizes", "8x8", "16x24", "--frames", str(frames), "--steps", str(steps), "--tile", str(tile),
            "--tile-overlap", str(tile_overlap), "--window", str(window), "--window-overlap", str(window_overlap),
            "--vae-tile", str(vae_tile), "--vae-tile-overlap", str(vae_overlap), "--vae-chunk", str(vae_chunk),
            "--threads", "1", "--output-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    json_path = tmp_path / "dc_vsr_sampling_cpu_tiny.json"
    report = json.loads(json_path.read_text())
    assert report["command"].endswith("python benchmarks/dc_vsr_sampling.py " + " ".join(argv))
    small, large = report["results"]
    assert (small["height"], small["width"], large["height"], large["width"]) == (8, 8, 16, 24)
    latent, latent_overlap = tile * 4 // 8, tile_overlap * 4 // 8
    vae_latent, vae_latent_overlap = vae_tile * 4 // 8, vae_overlap * 4 // 8
    for r in report["results"]:
        h, w = r["height"] * 4 // 8, r["width"] * 4 // 8
        plans = [plan_windows(n, s, o, exact=True) for n, s, o in ((frames, window, window_overlap),
                                                                   (h, latent, latent_overlap),
                                                                   (w, latent, latent_overlap))]
        assert r["unet_tiles"]["grid"] == [len(p) for p in plans]
        tiles = math.prod(len(p) for p in plans)
        calls = r["phase_calls"]
        assert calls["unet"] == steps * tiles
        vae_tiles = len(plan_windows(h, vae_latent, vae_latent_overlap)) * len(
            plan_windows(w, vae_latent, vae_latent_overlap))
        assert calls["vae_encode"] == calls["vae_decode"] == math.ceil(frames / vae_chunk) * vae_tiles
        assert r["output_checked"] == {"frames": frames, "width": 4 * r["width"], "height": 4 * r["height"]}
        ph = r["phase_s"]
        assert r["default_steps"] == 25 and r["projected"] is True
        assert r["step_s"] == pytest.approx(ph["unet"] / steps, abs=0.011)
        assert r["projected_s"] == pytest.approx(r["seconds"] + (25 - steps) * r["step_s"], abs=0.011)
        assert r["s_per_frame"] == pytest.approx(r["seconds"] / frames, abs=0.006)
        assert r["rest_s"] == pytest.approx(r["seconds"] - sum(ph.values()), abs=0.011)
        assert r["peak_rss_mib"] >= r["rss_before_mib"] > 0 and r["peak_method"] == "VmHWM"
        assert (r["sap"], r["tap"], r["dssag"], r["guidance_scale"]) == (True, True, True, 2.0)
    assert large["unet_tiles"]["grid"][1:] == [3, 5] and small["unet_tiles"]["grid"][1:] == [1, 1]

    markdown = (tmp_path / "dc_vsr_sampling_cpu_tiny.md").read_text()
    assert "TINY" in markdown and "Random weights" in markdown and f"`{bench.GPU_COMMAND}`" in markdown
    assert f"Command: `{report['command']}`" in markdown
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| LQ (WxH) |"))
    rows = [line for line in lines if line.startswith("| 8x8 |") or line.startswith("| 24x16 |")]
    assert len(rows) == 2 and all(row.count("|") == header.count("|") for row in rows)
    stored = json_numbers(report)
    figures = [n for row in rows for n in numbers_in(row)]
    assert figures and not [n for n in figures if n not in stored], figures
    assert bench.main(["--render", str(json_path)]) == 0
    assert (tmp_path / "dc_vsr_sampling_cpu_tiny.md").read_text() == markdown
