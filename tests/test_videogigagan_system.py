"""VideoGigaGAN system: the paper's losses, G/D/EMA updates, LPIPS weights handling, checkpoints, recipe and ablations.

CPU, tiny networks (``tiny_net()``, ``tiny_discriminator()``), real frames of the embedded sample clip.
"""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

import zoo
from zoo.cli import lightning_main, make_cli
from zoo.data.datamodule import VSRDataModule
from zoo.data.degradations.ops import bicubic_downsample
from zoo.data.video_io import open_video
from zoo.errors import ConfigError, WeightsError
from zoo.hub import family
from zoo.layers.discriminators import VideoDiscriminator
from zoo.models.videogigagan.convert import load_videogigagan
from zoo.models.videogigagan.net import VideoGigaGANNet
from zoo.models.videogigagan.system import VideoGigaGAN, upscale_with_whole_clip_propagation
from zoo.systems.base import EvalOptions
from zoo.testing import sample_clip_dir

from _tiny import fit_recipe, tiny_discriminator, tiny_net


ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ["1_per_frame", "2_temporal_attention", "3_flow_propagation", "4_blurpool", "5_hf_shuttle"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Recorder(Callback):
    """Records the logged training metrics after every batch."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.history.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def _datamodule(**overrides) -> VSRDataModule:
    kwargs = dict(train_paths=[str(sample_clip_dir())], val_paths=[str(sample_clip_dir())], num_frames=3,
                  mirror=False, gt_size=64, batch_size=1, val_num_frames=3, val_max_size=64, samples_per_epoch=8,
                  train_degradation="bicubic", val_degradation="bicubic")
    kwargs.update(overrides)
    return VSRDataModule(**kwargs)


def _trainer(**overrides) -> L.Trainer:
    kwargs = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def _tiny_system(**overrides) -> VideoGigaGAN:
    kwargs = dict(net=tiny_net(), discriminator=tiny_discriminator(), lpips_weight=0.0)
    kwargs.update(overrides)
    return VideoGigaGAN(**kwargs)


def _fake_alexnet_home(tmp_path: Path) -> Path:
    """A TORCH_HOME whose AlexNet file holds random ``features.*`` weights (LPIPS then runs; its values are meaningless)."""
    import torchvision

    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    features = {f"features.{k}": v for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()}
    torch.save(features, folder / "alexnet-owt-7be5be79.pth")
    return tmp_path


def test_training_step_losses_finite_and_g_d_ema_update() -> None:
    """Charbonnier + GAN + R1 are finite; G, D and the EMA all change; R1 is applied on D steps 0, 2 (interval 2)."""
    L.seed_everything(0)
    system = _tiny_system(r1_interval=2, lr_g=1e-3, lr_d=1e-3)
    g_before = {k: p.detach().clone() for k, p in system.net_g.named_parameters() if p.requires_grad}
    d_before = [p.detach().clone() for p in system.net_d.parameters()]
    recorder = _Recorder()
    trainer = _trainer(max_steps=6, callbacks=[recorder])  # Lightning counts G and D steps: 3 iterations
    trainer.fit(system, datamodule=_datamodule())

    assert len(recorder.history) == 3 and system._d_steps == 3
    first = recorder.history[0]
    for key in ("train/charbonnier", "train/gan_g", "train/r1", "train/d_real", "train/d_fake", "train/loss_g"):
        assert key in first and math.isfinite(first[key]), key
    assert first["train/r1"] > 0
    changed = [k for k, p in system.net_g.named_parameters() if p.requires_grad and not torch.equal(p, g_before[k])]
    assert changed
    assert any(not torch.equal(a, b) for a, b in zip(d_before, system.net_d.parameters()))
    assert system.net_g_ema is not None and int(system.net_g_ema.n_averaged) == 3
    ema = dict(system.inference_net.named_parameters())
    raw = dict(system.net_g.named_parameters())
    assert system.inference_net is not system.net_g
    assert any(not torch.equal(ema[k], raw[k]) for k in changed)


def test_r1_penalty_is_the_squared_gradient_norm_on_the_discriminator_input_scale() -> None:
    """For D(x) = <w, 2x - 1> per frame the penalty is ||w||^2 (gradient taken w.r.t. the [-1, 1] input)."""
    torch.manual_seed(0)
    w = torch.randn(3, 8, 8)
    real = torch.rand(2, 4, 3, 8, 8, requires_grad=True)
    logits = ((real * 2 - 1) * w).sum(dim=(2, 3, 4))  # (b, t)
    penalty = VideoGigaGAN._r1_penalty(None, logits, real)
    torch.testing.assert_close(penalty, w.square().sum())


def test_lpips_missing_stops_at_start_naming_the_file(tmp_path, monkeypatch, capsys) -> None:
    """LPIPS is built when fitting starts: without the AlexNet file the run stops there, naming the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    system = VideoGigaGAN(net=tiny_net(), discriminator=tiny_discriminator(), lpips_weight=5.0)
    with pytest.raises(WeightsError, match="alexnet-owt-7be5be79.pth"):
        system.setup("fit")
    with pytest.raises(WeightsError, match="lpips_weight: 0"):
        _trainer(max_steps=2).fit(system, datamodule=_datamodule())
    system.setup("validate")  # evaluation never needs the file
    other = VideoGigaGAN(net=tiny_net(), lpips_weight=5.0, lpips_weights=str(tmp_path / "nothing.pth"))
    with pytest.raises(WeightsError, match="nothing.pth"):
        other.setup("fit")
    # the recipe, through the command line: one clear line, exit status 2, before any training
    monkeypatch.chdir(ROOT)
    code = lightning_main(["fit", "--config", "zoo/videogigagan.yaml", "--config",
                           "configs/videogigagan/cpu_small.yaml", f"--trainer.default_root_dir={tmp_path}",
                           "--trainer.logger=false", "--trainer.fast_dev_run=true"])
    assert code == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and str(tmp_path) in err


def test_lpips_loss_runs_with_local_trunk_weights(tmp_path, monkeypatch) -> None:
    """With an AlexNet file present the LPIPS term is computed per frame and trains the generator."""
    monkeypatch.setenv("TORCH_HOME", str(_fake_alexnet_home(tmp_path)))
    L.seed_everything(0)
    system = _tiny_system(lpips_weight=5.0, gan_weight=0.0)
    assert system.net_d is None and system.lpips is None
    system.setup("fit")
    assert system.lpips is not None
    sr = torch.rand(1, 2, 3, 64, 64, requires_grad=True)
    gt = torch.rand(1, 2, 3, 64, 64)
    loss = system._lpips_loss(sr, gt)
    loss.backward()
    assert math.isfinite(float(loss)) and sr.grad is not None and sr.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in system.lpips.parameters())
    recorder = _Recorder()
    _trainer(max_steps=1, callbacks=[recorder]).fit(system, datamodule=_datamodule())
    assert math.isfinite(recorder.history[0]["train/lpips"])
    assert system.lpips.net.training is False  # the frozen trunk stays in eval mode
    assert not any("lpips" in k for k in system.state_dict())  # checkpoints carry no AlexNet weights


def _fixed_real_batches(num: int, *, size: int = 48, num_frames: int = 3) -> DataLoader:
    """``num`` copies of one batch: real frames of the embedded sample (GT ``size`` px, centre) and bicubic LQ."""
    frames = open_video(sample_clip_dir()).read(0, num_frames)
    top, left = (frames.shape[-2] - size) // 2, (frames.shape[-1] - size) // 2
    gt = frames[:, :, top:top + size, left:left + size].contiguous()
    item = {"lq": bicubic_downsample(gt, 4), "gt": gt, "key": "demo_000"}
    return DataLoader([item] * num, batch_size=1)


def test_short_overfit_lowers_charbonnier_on_a_fixed_real_batch() -> None:
    """Full GAN system (Charbonnier 10, GAN 0.05, lazy R1) on one fixed batch of real frames: Charbonnier falls."""
    L.seed_everything(0)
    system = _tiny_system(lr_g=1e-3, lr_d=2e-4, betas=(0.9, 0.99), ema_decay=None)
    recorder = _Recorder()
    iterations = 30
    _trainer(max_steps=2 * iterations, callbacks=[recorder]).fit(system, train_dataloaders=_fixed_real_batches(iterations))
    charb = [h["train/charbonnier"] for h in recorder.history]
    assert len(charb) == iterations
    first, last = sum(charb[:3]) / 3, sum(charb[-3:]) / 3
    assert last < 0.8 * first, f"Charbonnier did not fall clearly: {first:.4f} -> {last:.4f}"


def test_checkpoint_roundtrip_gives_the_ema_generator(tmp_path) -> None:
    L.seed_everything(0)
    system = _tiny_system(lr_g=1e-2)
    trainer = _trainer(max_steps=4)
    trainer.fit(system, datamodule=_datamodule())
    path = tmp_path / "videogigagan.ckpt"
    trainer.save_checkpoint(path)

    net = load_videogigagan(path)
    assert isinstance(net, VideoGigaGANNet) and not net.training and net.scale == 4
    ema_state, raw_state = system.inference_net.state_dict(), system.net_g.state_dict()
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], ema_state[k]) for k in loaded)
    assert any(not torch.equal(loaded[k], raw_state[k]) for k in loaded)
    lq = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(lq), system.inference_net.eval()(lq))
    raw = load_videogigagan(path, use_ema=False)
    assert all(torch.equal(raw.state_dict()[k], raw_state[k]) for k in raw_state)
    assert torch.load(path, weights_only=True)["videogigagan_d_steps"] == 2
    # through the hub table, and with a parameter-free override
    hub_net = zoo.load_pretrained("videogigagan", path, hf_shuttle=False)
    assert isinstance(hub_net, VideoGigaGANNet) and not hub_net.init_args["hf_shuttle"]

    # a bare state dict: the layout switches are read from the keys
    bare = tiny_net(temporal_attention=False)
    torch.save(bare.state_dict(), tmp_path / "bare.pth")
    net = load_videogigagan(tmp_path / "bare.pth", **{k: v for k, v in bare.init_args.items()
                                                      if k not in ("temporal_attention", "spynet_pretrained")})
    assert not net.temporal_attention and net.propagation is not None

    with pytest.raises(WeightsError, match="not found"):
        load_videogigagan(tmp_path / "missing.ckpt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a VideoGigaGAN checkpoint"):
        load_videogigagan(tmp_path / "other.pth")
    torch.save(tiny_net(base_channels=4, num_heads=2).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(WeightsError, match="does not match"):
        load_videogigagan(tmp_path / "narrow.pth")  # channel_mults etc. default: mis-shaped keys are listed
    with pytest.raises(ConfigError):
        load_videogigagan(path, no_such_option=1)


def test_realbasicvsr_checkpoint_is_refused(tmp_path) -> None:
    from zoo.models.realbasicvsr.net import RealBasicVSRNet
    from zoo.models.realbasicvsr.system import RealBasicVSR
    system = RealBasicVSR(net=RealBasicVSRNet(**family("realbasicvsr").variant("tiny")["net"]))
    trainer = _trainer(max_steps=1)
    trainer.fit(system, datamodule=_datamodule())
    trainer.save_checkpoint(tmp_path / "rbvsr.ckpt")
    with pytest.raises(WeightsError, match="rbvsr.ckpt is a realbasicvsr checkpoint; --model videogigagan cannot load it"):
        load_videogigagan(tmp_path / "rbvsr.ckpt")


def test_whole_clip_propagation_then_chunks() -> None:
    """Propagating once and upsampling in cross-faded chunks equals one pass for a per-frame U-Net."""
    torch.manual_seed(0)
    net = tiny_net(temporal_attention=False).eval()
    lq = torch.rand(1, 7, 3, 12, 12)
    with torch.no_grad():
        whole = net(lq)
        chunked = upscale_with_whole_clip_propagation(net, lq, chunk_frames=3, overlap=1)
        per_chunk = net(lq[:, :3])  # a chunk propagated on its own sees less of the clip
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    assert not torch.allclose(per_chunk, whole[:, :3], atol=1e-4)
    with pytest.raises(ConfigError):
        upscale_with_whole_clip_propagation(net, lq, chunk_frames=3, overlap=3)

    system = VideoGigaGAN(net=net, gan_weight=0.0, lpips_weight=0.0, ema_decay=None,
                          evaluation=EvalOptions(chunk_frames=3, overlap=1, lpips=False))
    torch.testing.assert_close(system.upscale(lq), whole.clamp(0, 1), rtol=0, atol=1e-5)


def test_validation_logs_metrics_against_bicubic() -> None:
    L.seed_everything(0)
    system = _tiny_system(evaluation=EvalOptions(lpips=False, chunk_frames=2, overlap=1))
    trainer = _trainer(max_steps=2, limit_val_batches=1, val_check_interval=1)
    trainer.fit(system, datamodule=_datamodule())
    metrics = trainer.callback_metrics
    for key in ("val/psnr", "val/ssim", "val/ewarp_gt_dis", "val/bicubic_psnr"):
        assert key in metrics and math.isfinite(float(metrics[key])), key


def test_recipe_has_the_paper_settings() -> None:
    recipe = yaml.safe_load((ROOT / "zoo/videogigagan.yaml").read_text())
    args = recipe["model"]["init_args"]
    assert (args["charbonnier_weight"], args["lpips_weight"], args["gan_weight"], args["r1_weight"]) == (10, 5, 0.05,
                                                                                                      0.2048)
    assert args["lr_g"] == 5e-5 and args["discriminator"]["init_args"]["temporal"] is True
    data = recipe["data"]["init_args"]
    assert data["num_frames"] == 10 and data["gt_size"] // data["scale"] == 64
    assert data["train_paths"] == ["zoo/assets/sample/demo_000"]
    cli = make_cli(["--config", str(ROOT / "zoo/videogigagan.yaml"), "--model.init_args.lpips_weight=0",
                    "--trainer.logger=false"], run=False)
    assert isinstance(cli.model, VideoGigaGAN) and cli.model.net_g.flow_propagation
    assert isinstance(cli.model.net_d, VideoDiscriminator) and cli.model.net_d.blocks[0].temporal is not None
    assert cli.model.hparams.r1_interval == 16 and cli.model.lpips is None


#: Cumulative switches of the paper's Table 1 rows: (temporal_attention, flow_propagation, blurpool, hf_shuttle,
#: discriminator sees time).
ROW_SWITCHES = {
    "1_per_frame": (False, False, False, False, False),
    "2_temporal_attention": (True, False, False, False, True),
    "3_flow_propagation": (True, True, False, False, True),
    "4_blurpool": (True, True, True, False, True),
    "5_hf_shuttle": (True, True, True, True, True),
}


@pytest.mark.parametrize("row", ABLATIONS)
def test_ablation_config_fast_dev_run(row, tmp_path, monkeypatch) -> None:
    """Each ablation row composes the right switches and trains (`lightning fit`, one step) on the embedded sample:
    finite losses, a last.ckpt that loads with the row's switches."""
    monkeypatch.chdir(ROOT)
    configs = ["--config", "zoo/videogigagan.yaml", "--config", f"configs/videogigagan/ablation_{row}.yaml",
               "--config", "configs/videogigagan/cpu_small.yaml", "--model.init_args.lpips_weight=0"]
    cli = make_cli([*configs, "--trainer.logger=false"], run=False)
    net = cli.model.net_g
    switches = tuple(net.init_args[k] for k in ("temporal_attention", "flow_propagation", "blurpool", "hf_shuttle"))
    assert (*switches, cli.model.net_d.init_args["temporal"]) == ROW_SWITCHES[row]
    assert net.init_args["base_channels"] == 16  # cpu_small applies on top of the row
    cli, ckpt = fit_recipe([
        *configs,
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.init_args.evaluation.lpips=false",
        "--data.init_args.num_frames=3",
        "--data.init_args.gt_size=64",
        "--data.init_args.train_degradation=bicubic",
        "--data.init_args.val_degradation=bicubic",
        "--data.init_args.val_num_frames=3",
        "--data.init_args.val_max_size=64",
    ], tmp_path)
    loaded = load_videogigagan(ckpt)  # the row's switches come back from the checkpoint
    trained = cli.model.inference_net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
    assert tuple(loaded.init_args[k] for k in ("temporal_attention", "flow_propagation", "blurpool",
                                               "hf_shuttle")) == switches
