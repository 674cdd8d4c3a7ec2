"""benchmarks/gpu_suite.py, the one prepared GPU script, run as its ``--dry-run`` on the CPU so that it cannot rot.

The dry run goes through every step the GPU run takes (the same functions, the CLI in-process, real clips, real
H.264 files), with tiny variants and tiny frames. Checked: every step ran without an error, every family appears at
both lengths, the targets are computed from the rows (recomputed here), the markdown is the rendering of the JSON,
and a budget too small for a step skips it and says so.
"""
from __future__ import annotations

import json

import pytest
from _tiny import load_script



@pytest.fixture(scope="module")
def suite():
    return load_script("benchmarks/gpu_suite.py")


@pytest.fixture(scope="module")
def dry_run(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    assert suite.main(["--dry-run", "--device", "cpu", "--out", str(out), "--budget-s", "3000"]) == 0
    report = json.loads((out / "speed_dryrun_cpu.json").read_text())
    return out, report


def test_every_step_runs_without_error(dry_run, suite):
    _, report = dry_run
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["net", "upscale", "diffusion", "upscale_diffusion", "precision", "ratio"]
    for name, step in steps.items():
        assert step["status"] == "done", (name, step["status"])
        assert step["rows"], name
        assert not [r for r in step["rows"] if "error" in r], name
    assert report["dry_run"] is True and report["environment"]["commit"]


def test_every_family_runs_the_whole_upscale_path_at_two_lengths(dry_run, suite):
    _, report = dry_run
    steps = {s["name"]: s for s in report["steps"]}
    rows = steps["upscale"]["rows"] + steps["upscale_diffusion"]["rows"]
    short, long = suite.Scale.for_run("cpu", True).lengths
    for name in suite.REGRESSION + suite.DIFFUSION:
        frames = sorted(r["frames"] for r in rows if r["family"] == name)
        assert frames == [short, long], name
    for r in rows:
        assert r["seconds"] > 0 and r["fps"] == pytest.approx(r["frames"] / r["seconds"])
        assert r["dtype"] == "fp32"  # --dtype auto on a CPU
        assert r["peak_gpu_mib"] is None and r["utilisation"] is None  # no GPU: nothing made up
        timing = r["timing"]
        for key in ("decode_s", "compute_s", "encode_s", "wait_decode_s", "wait_encode_s"):
            assert timing[key] >= 0, key
    # the 720p-output step ran each diffusion family once, on its short clip
    assert sorted(r["family"] for r in steps["diffusion"]["rows"]) == sorted(suite.DIFFUSION)
    net = steps["net"]["rows"]
    assert [(r["dtype"], r["channels_last"]) for r in net] == [("fp32", False), ("bf16", False), ("bf16", True)]


def test_targets_are_computed_from_the_rows(dry_run, suite):
    out, report = dry_run
    by_target = {t["target"]: t for t in report["targets"]}
    steps = {s["name"]: s for s in report["steps"]}
    best = max((r for r in steps["net"]["rows"] if r["dtype"] == "bf16"), key=lambda r: r["fps"])
    fps_target = next(t for t in by_target.values() if t["target"].startswith("RealBasicVSR"))
    assert f"{best['fps']:.1f} frames/s" in fps_target["measured"]
    assert fps_target["met"] == (best["fps"] >= suite.TARGET_FPS)
    # no GPU memory on a CPU: the flatness targets say "not measured" instead of inventing a figure
    flat = [t for t in report["targets"] if "flat in length" in t["target"]]
    assert len(flat) == len(suite.REGRESSION + suite.DIFFUSION)
    assert all(t["met"] is None and t["measured"] == "not measured" for t in flat)
    md = (out / "speed_dryrun_cpu.md").read_text()
    assert md == suite.render(report)
    assert "**Dry run**" in md and fps_target["measured"] in md


def test_growth_target_from_gpu_rows(suite):
    """The flatness target as a GPU run fills it: growth from the rows, met at 5 % or less."""
    def step(name, rows):
        return suite.Step(name, "", list, 0, rows=rows)

    rows = [{"family": "realbasicvsr", "frames": 100, "peak_gpu_mib": 1000.0},
            {"family": "realbasicvsr", "frames": 1000, "peak_gpu_mib": 1049.0},
            {"family": "videogigagan", "frames": 100, "peak_gpu_mib": 1000.0, "fps": 20.0},
            {"family": "videogigagan", "frames": 1000, "peak_gpu_mib": 1200.0, "fps": 21.5}]
    found = suite.targets({"net": step("net", []), "upscale": step("upscale", rows), "diffusion": step("d", [])})
    by_family = {t["target"].split(":")[0]: t for t in found if "flat" in t["target"]}
    assert by_family["realbasicvsr"]["met"] is True and "+4.9%" in by_family["realbasicvsr"]["measured"]
    assert by_family["videogigagan"]["met"] is False and "+20.0%" in by_family["videogigagan"]["measured"]
    assert by_family["sateco"]["met"] is None
    vgg = next(t for t in found if t["target"].startswith("VideoGigaGAN"))
    assert "20.0 frames/s end to end at 100 frames" in vgg["measured"] and "21.5" in vgg["measured"]


def test_a_small_budget_skips_steps_and_says_so(suite, tmp_path):
    assert suite.main(["--dry-run", "--device", "cpu", "--out", str(tmp_path), "--budget-s", "0",
                       "--only", "net,ratio"]) == 0
    report = json.loads((tmp_path / "speed_dryrun_cpu.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["net", "ratio"]
    assert all(s["status"].startswith("skipped") and not s["rows"] for s in report["steps"])
    assert "skipped" in (tmp_path / "speed_dryrun_cpu.md").read_text()


def test_cuda_without_a_gpu_is_one_line(suite, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available"):
        suite.main(["--device", "cuda", "--out", str(tmp_path)])
