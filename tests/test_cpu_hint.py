"""The one-line warning of a full-size model run on the CPU (``FamilySpec.cpu_hint``, ``VSRSystem.setup``) and the
diffusion recipes' validation sampler: its tqdm progress and its step count as a recipe option.

No full-size model is built: the decision is tested on the spec with parameter counts, the warning on a tiny system
made to look full size (no variant, ``min_params`` 0), and validation on the tiny CPU overrides.
"""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import lightning as L
import pytest

from zoo.data.datamodule import VSRDataModule
from zoo.family import CpuHint, format_duration
from zoo.hub import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
HINTED = [name for name, spec in FAMILIES.items() if spec.cpu_hint is not None]
RESULTS = json.loads((ROOT / "benchmarks/results/train_step_cpu.json").read_text())["results"]


def test_families_with_a_tiny_cpu_override_have_a_hint():
    assert {"upscale_a_video", "sateco", "dc_vsr", "videogigagan"} <= set(HINTED)


@pytest.mark.parametrize("name", HINTED)
def test_hint_quotes_a_recorded_figure_and_an_existing_override(name):
    hint = FAMILIES[name].cpu_hint
    assert (ROOT / hint.override).is_file()
    assert "benchmarks/results/train_step_cpu.md" in hint.measured
    recorded = {row["family"]: row for row in RESULTS}[name]
    # the figure quoted is the one recorded (lower bounds for a step that was stopped before it ended)
    assert hint.finished == ("stopped" not in recorded)
    step_s, peak_mib = ((recorded["step_s"], recorded["peak_rss_mib"]) if hint.finished else
                        (recorded["step_s_more_than"], recorded["peak_rss_mib_more_than"]))
    assert step_s == hint.step_seconds
    assert hint.peak_rss_gb == pytest.approx(peak_mib * 2**20 / 1e9, abs=0.05)
    line = hint.message(name, 746_000_000)
    assert "\n" not in line
    assert line.startswith(f"{name}: full-size model (746.0 M parameters) on the CPU")
    cost = "ran out of memory" if hint.step_seconds is None else format_duration(hint.step_seconds)
    assert cost in line and line.endswith(f"add --config {hint.override}")


def test_decision():
    hint = CpuHint(override="configs/x/tiny_cpu.yaml", step_seconds=169.0, measured="somewhere")
    assert hint.applies(device_type="cpu", num_params=746_000_000, variant=None)
    assert not hint.applies(device_type="cuda", num_params=746_000_000, variant=None)  # GPU
    assert not hint.applies(device_type="cpu", num_params=746_000_000, variant="tiny")  # a named variant
    assert not hint.applies(device_type="cpu", num_params=1_000_000, variant=None)  # reduced sizes
    assert format_duration(169) == "2 min 49 s" and format_duration(42.4) == "42 s"
    assert format_duration(3725) == "1 h 2 min"
    assert "2 min 49 s" in FAMILIES["upscale_a_video"].cpu_hint.message("upscale_a_video", 746_000_000)


def _tiny_cli(family: str, *extra: str):  # noqa: ANN202
    from zoo.cli import make_cli

    return make_cli(["--config", f"zoo/{family}.yaml", "--config", f"configs/{family}/tiny_cpu.yaml", *extra,
                     "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                     "--trainer.enable_model_summary=false"], run=False)


def _ours(records: list[warnings.WarningMessage], family: str) -> list[str]:
    return [str(r.message) for r in records if str(r.message).startswith(f"{family}: full-size model")]


def test_warning_and_validation_sampler(monkeypatch, capsys):
    """The tiny variant is silent at setup; the same system seen as full size (no variant, a hint whose threshold
    it passes) warns once, in one line, on the CPU only (here at the start of ``predict``). Validation:
    ``model.init_args.sampling.num_inference_steps`` is the sampler's step count (every clip: one sampler call, one
    scheduler step per denoising step) and ``sampling.progress`` its tqdm bar (steps done / total, rate). The three
    diffusion systems hand ``sampling`` to their pipeline the same way (``net_g(lq, **asdict(self.sampling))``);
    Upscale-A-Video stands for them."""
    monkeypatch.chdir(ROOT)
    cli = _tiny_cli("upscale_a_video", "--model.init_args.sampling.num_inference_steps=3",
                    "--model.init_args.sampling.progress=true")
    system = cli.model
    scheduler = system.net_g.scheduler
    calls = []
    step = scheduler.step

    def counting_step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return step(*args, **kwargs)

    monkeypatch.setattr(scheduler, "step", counting_step)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        cli.trainer.validate(system, datamodule=cli.datamodule, verbose=False)  # runs system.setup("validate")
    assert not _ours(records, "upscale_a_video")  # the tiny variant: silent
    assert len(calls) == 3
    err = capsys.readouterr().err
    assert re.search(r"denoising: +\d+%\|.*\| \d/3 \[", err) and "it/s" in err, err[-2000:]

    monkeypatch.setitem(system.hparams, "variant", None)
    monkeypatch.setattr(system, "cpu_hint", dataclasses.replace(system.cpu_hint, min_params=0))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_predict_batches=0)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        trainer.predict(system, datamodule=VSRDataModule(predict_paths=["zoo/assets/sample/demo_000"]))
    ours = [r for r in records if str(r.message).startswith("upscale_a_video: full-size model")]
    assert len(ours) == 1, [str(r.message) for r in records]
    line = str(ours[0].message)
    assert "\n" not in line and "configs/upscale_a_video/tiny_cpu.yaml" in line
    # attributed to Lightning's hook runner, which Lightning's warning format prints as one line
    assert "lightning" in Path(ours[0].filename).parts, ours[0].filename
    assert system.cpu_warning("cuda") is None  # on a GPU: silent
