"""DC-VSR training: the EDM loss falls on real frames, only the chosen UNet parts train, the recipe runs (tiny CPU
override) and its trained-only checkpoint loads back for inference on its SVD folder."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from zoo.data.degradations import bicubic_downsample
from zoo.data.video_io import open_video
from zoo.errors import ConfigError
from zoo.hub import family, load_pretrained
from zoo.models.dc_vsr.sampling import SamplingOptions
from zoo.models.dc_vsr.system import DCVSR
from zoo.systems.base import EvalOptions
from zoo.testing import sample_clip_dir, write_svd_folder

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY = family("dc_vsr").variant("tiny")
FAST = SamplingOptions(num_inference_steps=2, window=None, tile=None, vae_tile=None)
NO_METRICS = EvalOptions(lpips=False, warping_error=False)
TINY_ARGS = ["--config", "zoo/dc_vsr.yaml", "--config", "configs/dc_vsr/tiny_cpu.yaml"]


@pytest.fixture(scope="module")
def real_batch() -> dict:
    """4 real frames of the embedded sample: a 64x64 GT crop and its x1/4 LQ."""
    frames = open_video(sample_clip_dir()).read(stop=4)
    gt = frames[None, :, :, 148:212, 288:352].contiguous()
    return {"lq": bicubic_downsample(gt, 4), "gt": gt}


def _system(**kwargs) -> DCVSR:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        options = dict(variant="tiny") if "pretrained" not in kwargs else {}
        return DCVSR(sampling=FAST, evaluation=NO_METRICS, **options, **kwargs)


def _loss(system: DCVSR, batch: dict, seeds=range(3)) -> float:
    with torch.no_grad():
        values = []
        for seed in seeds:
            torch.manual_seed(seed)
            values.append(float(system.diffusion_loss(batch["lq"], batch["gt"])))
    return sum(values) / len(values)


def test_the_edm_loss_falls_and_only_the_chosen_parts_train(real_batch):
    system = _system(train_modules="temporal", lr=1e-3, condition_dropout=0.0)
    names = {n for n, p in system.named_parameters() if p.requires_grad}
    assert names and all(("temporal_" in n or "time_mixer" in n or "time_pos_embed" in n) for n in names)
    frozen = {n: p.detach().clone() for n, p in system.named_parameters() if not p.requires_grad}
    before = _loss(system, real_batch)
    optimizer = system.configure_optimizers()
    system.train()
    for step in range(12):
        torch.manual_seed(step % 3)
        loss = system.diffusion_loss(real_batch["lq"], real_batch["gt"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _loss(system, real_batch)
    assert after < 0.9 * before, (before, after)
    assert all(torch.equal(p, frozen[n]) for n, p in system.named_parameters() if n in frozen)
    with pytest.raises(ConfigError, match="train_modules"):
        _system(train_modules="vae")


def test_recipe_fast_dev_run_on_real_frames(monkeypatch, tmp_path):
    """`lightning fit --config zoo/dc_vsr.yaml --config configs/dc_vsr/tiny_cpu.yaml --trainer.fast_dev_run=true`:
    a training step (Real-ESRGAN degradations of the embedded real clip) and a validation batch through the tiled
    sampler with SAP, TAP and DSSAG."""
    from zoo.cli import make_cli

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = make_cli([*TINY_ARGS, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"],
                       run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_edm"]) and "val/psnr" in metrics, sorted(metrics)


def test_trained_only_checkpoint_of_the_recipe_loads_back_on_its_svd_folder(monkeypatch, tmp_path):
    from _tiny import fit_recipe

    monkeypatch.chdir(ROOT)
    svd = write_svd_folder(tmp_path / "svd", unet=TINY["unet"], vae=TINY["vae"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli, last = fit_recipe([*TINY_ARGS, "--model.init_args.variant=null", f"--model.init_args.pretrained={svd}",
                                "--model.init_args.train_modules=attention",
                                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                                "--trainer.callbacks.save_last=true"], tmp_path / "run")
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["vsrzoo"]["weights"] == "trained" and ckpt["vsrzoo"]["family"] == "dc_vsr"
    trained = {k for k in ckpt["state_dict"]}
    assert trained and all(".attentions." in k for k in trained) and not any(".vae." in k for k in trained)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        upscaler = load_pretrained("dc_vsr", last, num_inference_steps=2, tile=None, window=None, vae_tile=None)
    state = upscaler.pipeline.state_dict()
    system_state = cli.model.net_g.state_dict()
    assert all(torch.equal(state[k], system_state[k]) for k in state)
    lq = torch.rand(1, 2, 3, 8, 8)
    assert upscaler(lq).shape == (1, 2, 3, 32, 32)
