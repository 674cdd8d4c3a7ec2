"""RealBasicVSR system: learning on real frames, the recipe through the CLI, checkpoints that load back."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import zoo
from zoo.cli import lightning_main
from zoo.data.datamodule import VSRDataModule
from zoo.errors import WeightsError
from zoo.hub import family
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.models.realbasicvsr.system import RealBasicVSR
from zoo.systems.base import EvalOptions
from zoo.testing import sample_clip_dir

TINY_NET = family("realbasicvsr").variant("tiny")["net"]


class _LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))


def _tiny_datamodule(**overrides) -> VSRDataModule:
    kwargs = dict(
        train_paths=[str(sample_clip_dir())],
        val_paths=[str(sample_clip_dir())],
        num_frames=4,
        mirror=True,
        gt_size=64,
        batch_size=1,
        val_num_frames=3,
        val_max_size=64,
        samples_per_epoch=4,
        train_degradation="bicubic",
    )
    kwargs.update(overrides)
    return VSRDataModule(**kwargs)


def _trainer(**overrides) -> L.Trainer:
    kwargs = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def test_overfit_on_real_frames_lowers_loss() -> None:
    """On one fixed batch of real footage the stage-1 loss (L1 + cleaning) falls clearly within 40 steps."""
    L.seed_everything(0)
    system = RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), lr_g=3e-3, ema_decay=None)
    recorder = _LossRecorder()
    trainer = _trainer(max_steps=40, overfit_batches=1, callbacks=[recorder], limit_val_batches=0)
    trainer.fit(system, datamodule=_tiny_datamodule(num_frames=2, mirror=False))
    first, last = sum(recorder.losses[:5]) / 5, sum(recorder.losses[-5:]) / 5
    assert len(recorder.losses) == 40
    assert last < 0.75 * first, f"loss did not fall clearly: {first:.4f} -> {last:.4f}"


def test_gan_stage_runs_and_updates_both_networks() -> None:
    """Stage 2 (perceptual + GAN, manual optimisation): G, D and the EMA all change after two steps."""
    L.seed_everything(0)
    system = RealBasicVSR(
        net=RealBasicVSRNet(**TINY_NET),
        discriminator=UNetDiscriminatorSN(mid_channels=8),
        perceptual_weight=1.0,
        vgg_weights="random",
        gan_weight=0.05,
        lr_g=1e-3,
        lr_d=1e-3,
    )
    g_before = [p.detach().clone() for p in system.net_g.parameters() if p.requires_grad]
    d_before = [p.detach().clone() for p in system.net_d.parameters()]
    # Lightning counts every optimizer.step() in global_step: 2 iterations of G + D are 4 steps
    trainer = _trainer(max_steps=4, limit_val_batches=0)
    trainer.fit(system, datamodule=_tiny_datamodule(num_frames=2, mirror=False))
    assert trainer.global_step == 4
    g_after = [p for p in system.net_g.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g_after))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, system.net_d.parameters()))
    assert system.net_g_ema is not None and int(system.net_g_ema.n_averaged) == 2
    # the EMA differs from both the raw generator and its initial copy
    ema = dict(system.inference_net.named_parameters())
    raw = dict(system.net_g.named_parameters())
    assert system.inference_net is not system.net_g
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].requires_grad)


def test_validation_logs_metrics_against_bicubic() -> None:
    """The logged validation numbers are the metrics of the system's own output and of the MATLAB bicubic baseline
    on the validation clip, computed here independently."""
    from zoo.data.degradations import bicubic_upsample
    from zoo.metrics import psnr, ssim, warping_error

    L.seed_everything(0)
    system = RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), evaluation=EvalOptions(lpips=False, chunk_frames=2, overlap=1))
    trainer = _trainer(limit_val_batches=1)
    datamodule = _tiny_datamodule()
    trainer.validate(system, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    batch = next(iter(datamodule.val_dataloader()))
    lq, gt = batch["lq"], batch["gt"]
    bicubic = bicubic_upsample(lq, 4)
    assert metrics["val/bicubic_psnr"] == pytest.approx(float(psnr(bicubic, gt, y_channel=True)[0]), abs=1e-4)
    assert metrics["val/bicubic_ssim"] == pytest.approx(float(ssim(bicubic, gt, y_channel=True)[0]), abs=1e-5)
    system.eval()
    system._set_eval_thres()
    with torch.no_grad():
        sr = system.upscale(lq)
    system._restore_thres()
    assert metrics["val/psnr"] == pytest.approx(float(psnr(sr, gt, y_channel=True)[0]), abs=1e-4)
    flow_from_gt = 1e3 * float(warping_error(sr, flow="dis", flow_source=gt)[0])
    assert metrics["val/ewarp_gt_dis"] == pytest.approx(flow_from_gt, rel=1e-4)
    assert metrics["val/psnr"] != pytest.approx(metrics["val/bicubic_psnr"], abs=1e-3)
    # the eval threshold was restored after validation
    assert system.inference_net.dynamic_refine_thres == 255.0


def test_checkpoint_roundtrip_uses_ema_generator(tmp_path) -> None:
    """A checkpoint written by the system loads through zoo.load_pretrained as the EMA generator, with overrides."""
    L.seed_everything(0)
    system = RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), lr_g=1e-2)
    trainer = _trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(system, datamodule=_tiny_datamodule())
    path = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(path)

    net = zoo.load_pretrained("realbasicvsr", path, dynamic_refine_thres=5)
    assert isinstance(net, RealBasicVSRNet) and not net.training
    assert net.dynamic_refine_thres == 5.0
    ema_state = system.inference_net.state_dict()
    raw_state = system.net_g.state_dict()
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], ema_state[k]) for k in loaded)
    assert any(not torch.equal(loaded[k], raw_state[k]) for k in loaded)
    lq = torch.rand(1, 3, 3, 32, 32)
    reference = system.inference_net.eval()
    reference.dynamic_refine_thres = 5.0
    with torch.no_grad():
        torch.testing.assert_close(net(lq), reference(lq))

    # stage 2 starts from it
    stage2 = RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), init_from=str(path))
    assert all(torch.equal(stage2.net_g.state_dict()[k], ema_state[k]) for k in ema_state)
    with pytest.raises(WeightsError, match="no checkpoint"):
        RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), init_from=str(tmp_path / "missing.ckpt"))


def test_recipe_trains_writes_a_checkpoint_that_loads(tmp_path, monkeypatch) -> None:
    """`lightning fit --config zoo/realbasicvsr.yaml` for one step on the embedded real sample: the logged losses are
    finite, the recipe's checkpoint callback writes last.ckpt, and it loads as the generator that was trained."""
    from pathlib import Path

    from _tiny import fit_recipe

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cli, ckpt = fit_recipe([
        "--config", "zoo/realbasicvsr.yaml",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.init_args.net.init_args.mid_channels=8",
        "--model.init_args.net.init_args.num_propagation_blocks=1",
        "--model.init_args.net.init_args.num_cleaning_blocks=1",
        "--data.init_args.num_frames=4",
        "--data.init_args.gt_size=64",
        "--data.init_args.val_num_frames=3",
        "--data.init_args.val_max_size=64",
    ], tmp_path)
    net = zoo.load_pretrained("realbasicvsr", ckpt)
    trained = cli.model.inference_net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    assert math.isfinite(float(cli.trainer.callback_metrics["val/psnr"]))


def test_stage2_recipe_composes_into_a_gan_system() -> None:
    """configs/realbasicvsr/stage2_gan.yaml on top of the recipe gives the paper's stage-2 GAN system."""
    from pathlib import Path

    from zoo.cli import make_cli

    root = Path(__file__).resolve().parents[1]
    cli = make_cli([
        "--config", str(root / "zoo/realbasicvsr.yaml"),
        "--config", str(root / "configs/realbasicvsr/stage2_gan.yaml"),
        "--model.init_args.vgg_weights=random",  # the real VGG19 file is not on CI machines
        "--model.init_args.net.init_args.num_propagation_blocks=1",
        "--model.init_args.net.init_args.num_cleaning_blocks=1",
        "--trainer.logger=false",
    ], run=False)
    hp = cli.model.hparams
    assert hp.gan_weight == 0.05 and hp.perceptual_weight == 1.0 and hp.lr_g == 5e-5 and hp.lr_d == 1e-4
    assert isinstance(cli.model.net_d, UNetDiscriminatorSN)
    assert cli.model.perceptual is not None and cli.model.hparams.eval_dynamic_refine_thres == 5.0
    assert cli.datamodule.hparams.batch_size == 1


def test_stage2_without_vgg_weights_names_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth"):
        RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), perceptual_weight=1.0, gan_weight=0.05)


def test_predict_writes_upscaled_clips(tmp_path) -> None:
    """`lightning predict` path: LQ-only real frames in, PNG frames at 4x out through VideoPredictionWriter."""
    from PIL import Image

    from zoo.data.video_io import open_video
    from zoo.systems.writer import VideoPredictionWriter

    clip = tmp_path / "lq_clip"
    clip.mkdir()
    for i, img in enumerate(open_video(sample_clip_dir()).iter_frames(stop=3)):
        Image.fromarray(img[100:140, 200:260]).save(clip / f"{i:08d}.png")
    L.seed_everything(0)
    system = RealBasicVSR(net=RealBasicVSRNet(**TINY_NET), evaluation=EvalOptions(chunk_frames=2, overlap=1))
    out = tmp_path / "pred"
    trainer = _trainer(callbacks=[VideoPredictionWriter(output_dir=str(out), as_frames=True)])
    dm = VSRDataModule(predict_paths=[str(clip)])
    trainer.predict(system, datamodule=dm, return_predictions=False)
    written = open_video(out / "lq_clip")
    assert written.num_frames == 3 and (written.width, written.height) == (240, 160)


def test_cli_stage2_without_vgg_weights_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """The missing-weights error raised while LightningCLI builds the model reaches the user as one line, exit 2."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    code = lightning_main([
        "fit", "--config", str(root / "zoo/realbasicvsr.yaml"), "--config", str(root / "configs/realbasicvsr/stage2_gan.yaml"),
        "--trainer.fast_dev_run=true", "--model.init_args.net.init_args.num_propagation_blocks=1",
        "--model.init_args.net.init_args.num_cleaning_blocks=1",
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: PerceptualLoss needs the ImageNet VGG19 weights")
    assert "Traceback" not in err
