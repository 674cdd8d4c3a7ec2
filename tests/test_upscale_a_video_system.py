"""Upscale-A-Video LightningModules on tiny networks: recipes run, the v-loss trains, the right parts train, and
checkpoints hold only the trained layers (the frozen ones are rebuilt from the ``pretrained`` folder)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.errors import ConfigError, WeightsError
from zoo.hub import family, load_pretrained
from zoo.models.upscale_a_video.sampling import SamplingOptions
from zoo.models.upscale_a_video.system import UpscaleAVideo, UpscaleAVideoVAEFinetune
from zoo.systems.base import EvalOptions
from zoo.testing import write_sd_x4_folder

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = family("upscale_a_video").variant("tiny")
TINY_UNET, TINY_VAE = TINY["unet"], TINY["vae"]
FAST_SAMPLING = SamplingOptions(num_inference_steps=1, tile=None, window=4, window_overlap=1)
NO_METRICS = EvalOptions(lpips=False, warping_error=False)


def _quiet(cls, **kwargs):  # noqa: ANN001, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-initialisation and no-text-encoder warnings
        return cls(unet=TINY_UNET, vae=TINY_VAE, sampling=FAST_SAMPLING, evaluation=NO_METRICS, **kwargs)


def _batch(t: int = 4, h: int = 16, w: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(1, t, 3, 4 * h, 4 * w, generator=g)
    lq = rearrange(F.avg_pool2d(rearrange(gt, "b t c h w -> (b t) c h w"), 4), "(b t) c h w -> b t c h w", b=1)
    return {"lq": lq, "gt": gt, "key": ["clip"]}


@pytest.mark.parametrize("recipe", ["zoo/upscale_a_video.yaml", "configs/upscale_a_video/vae_finetune.yaml"])
def test_recipes_train_and_write_a_checkpoint_that_loads(recipe, monkeypatch, tmp_path):
    """Both recipes with the tiny override: one step, finite losses, last.ckpt written (random init: every weight)
    and loadable by zoo.load_pretrained as the sampler of the trained networks."""
    from _tiny import fit_recipe

    monkeypatch.chdir(ROOT)
    extra = ["--model.init_args.lpips_weight=0", "--model.init_args.gan_start_step=0",
             "--model.init_args.discriminator.init_args.mid_channels=8"] if "vae" in recipe else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli, ckpt = fit_recipe(["--config", recipe, "--config", "configs/upscale_a_video/tiny_cpu.yaml",
                                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                                "--trainer.callbacks.save_last=true", *extra], tmp_path)
        upscaler = load_pretrained("upscale_a_video", ckpt, num_inference_steps=1, progress=False)
    trained = cli.model.net_g.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in upscaler.pipeline.state_dict().items())


def test_random_init_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        UpscaleAVideo(unet=TINY_UNET, vae=TINY_VAE)


def test_training_steps_lower_the_v_loss_on_a_fixed_batch():
    system = _quiet(UpscaleAVideo, lr=2e-3, prompt_dropout=0.0)
    optimizer = system.configure_optimizers()
    batch = _batch()

    def loss() -> torch.Tensor:
        torch.manual_seed(0)  # the same latents noise, timesteps and noise levels every time
        return system.diffusion_loss(batch["lq"], batch["gt"], [""])

    with torch.no_grad():
        start = loss().item()
    for _ in range(8):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        end = loss().item()
    assert end < 0.9 * start, (start, end)


def test_only_temporal_layers_train_by_default():
    system = _quiet(UpscaleAVideo)
    system.train()
    unet = system.net_g.unet
    trainable = {n for n, p in system.named_parameters() if p.requires_grad}
    temporal = {f"net_g.unet.{n}" for n, p in unet.named_parameters() if "temporal" in n}
    assert trainable == temporal and trainable
    assert unet.training and not system.net_g.vae.training  # frozen VAE stays in eval mode
    torch.manual_seed(0)
    batch = _batch(t=2, h=8, w=8)
    system.diffusion_loss(batch["lq"], batch["gt"], [""]).backward()
    assert all(p.grad is not None for n, p in system.named_parameters() if p.requires_grad)
    assert all(p.grad is None for p in system.net_g.vae.parameters())
    everything = _quiet(UpscaleAVideo, train_temporal_only=False, gradient_checkpointing=True)
    assert all(p.requires_grad for p in everything.net_g.unet.parameters())
    assert everything.net_g.unet.gradient_checkpointing


def test_system_upscale_runs_the_sampler():
    system = _quiet(UpscaleAVideo).eval()
    lq = _batch(t=3, h=8, w=8)["lq"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sr = system.upscale(lq)
    assert sr.shape == (1, 3, 3, 32, 32) and 0 <= float(sr.min()) and float(sr.max()) <= 1


def test_system_option_checks():
    with pytest.raises(ConfigError, match="noise_level_range"):
        _quiet(UpscaleAVideo, noise_level_range=(0, 400))
    with pytest.raises(ConfigError, match="scale"):
        _quiet(UpscaleAVideo, scale=2)
    with pytest.raises(ConfigError, match="use_video_vae"):
        _quiet(UpscaleAVideoVAEFinetune, use_video_vae=False, lpips_weight=0.0)


def test_vae_finetune_trains_the_new_decoder_layers():
    system = _quiet(UpscaleAVideoVAEFinetune, lpips_weight=0.0, gan_weight=0.0)
    system.train()
    vae = system.net_g.vae
    trainable = {n for n, p in vae.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in vae.named_parameters() if "temporal" in n or "condition_" in n}
    assert not any(p.requires_grad for p in system.net_g.unet.parameters())
    assert not system.net_g.unet.training
    batch = _batch(t=3, h=8, w=8)
    latents = system._encode(batch["gt"], sample=False)
    sr = system.decode(latents, batch["lq"])
    assert sr.shape == batch["gt"].shape
    F.l1_loss(sr, batch["gt"]).backward()
    assert all(p.grad is not None for p in vae.parameters() if p.requires_grad)


def test_vae_finetune_needs_lpips_weights_when_weighted(tmp_path):
    with pytest.raises(WeightsError, match="lpips_weight"):
        _quiet(UpscaleAVideoVAEFinetune, lpips_weights=str(tmp_path / "missing_alexnet.pth"))


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def sd_x4_folder(tmp_path_factory) -> Path:
    """A tiny diffusers SD x4 upscaler folder (random weights) to train from."""
    return write_sd_x4_folder(tmp_path_factory.mktemp("sd_x4") / "sd_x4", unet=TINY_UNET, vae=TINY_VAE,
                              text_encoder=TINY["text_encoder"])


def _fit(system: UpscaleAVideo, root: Path, *, max_steps: int, ckpt_path: str | None = None) -> Path:
    import lightning as L
    from torch.utils.data import DataLoader

    batch = _batch(t=2, h=8, w=8)
    data = DataLoader([{k: v[0] if torch.is_tensor(v) else v[0] for k, v in batch.items()}] * 4, batch_size=1)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root, limit_val_batches=0,
                        num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(system, train_dataloaders=data, ckpt_path=ckpt_path)
    (path,) = sorted(root.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)[-1:]
    return path


def test_checkpoints_hold_the_trained_layers_only_and_reload(sd_x4_folder, tmp_path):
    torch.manual_seed(0)
    system = UpscaleAVideo(pretrained=str(sd_x4_folder), sampling=FAST_SAMPLING, evaluation=NO_METRICS, lr=1e-3)
    trained = {n for n, p in system.named_parameters() if p.requires_grad}
    path = _fit(system, tmp_path / "run", max_steps=2)
    ckpt = torch.load(path, map_location="cpu")
    assert set(ckpt["state_dict"]) == trained  # temporal layers only: no VAE, text encoder or image UNet
    made_by = ckpt["vsrzoo"].pop("made_by")  # zoo.provenance
    assert set(made_by) == {"command", "commit", "date"} and made_by["command"]
    rng = ckpt["vsrzoo"].pop("rng")  # every rank's random states, restored on resume (one rank here)
    assert isinstance(rng, list) and len(rng) == 1
    assert ckpt["vsrzoo"] == {"family": "upscale_a_video", "weights": "trained", "pretrained": str(sd_x4_folder)}
    full = sum(v.numel() for v in system.state_dict().values())
    assert sum(v.numel() for v in ckpt["state_dict"].values()) < 0.5 * full

    # zoo.load_pretrained rebuilds the frozen parts from the folder and takes the trained ones from the checkpoint
    upscaler = load_pretrained("upscale_a_video", path, num_inference_steps=1, progress=False)
    ours = system.net_g.state_dict()
    for key, value in upscaler.pipeline.state_dict().items():
        assert torch.equal(value, ours[key]), key
    # the Lightning way: a fresh system from the same folder + the checkpoint
    again = UpscaleAVideo.load_from_checkpoint(path, map_location="cpu")
    assert all(torch.equal(v, ours[k]) for k, v in again.net_g.state_dict().items())
    # resuming training from it works (optimizer state of the trained layers only)
    resumed = UpscaleAVideo(pretrained=str(sd_x4_folder), sampling=FAST_SAMPLING, evaluation=NO_METRICS, lr=1e-3)
    _fit(resumed, tmp_path / "resumed", max_steps=3, ckpt_path=str(path))

    broken = dict(ckpt, state_dict={k: v for k, v in ckpt["state_dict"].items() if "down_temporal.0" not in k})
    torch.save(broken, tmp_path / "broken.ckpt")
    with pytest.raises(WeightsError, match="missing"):
        UpscaleAVideo.load_from_checkpoint(tmp_path / "broken.ckpt", map_location="cpu")


def test_random_init_checkpoints_keep_everything(tmp_path):
    system = _quiet(UpscaleAVideo)
    path = _fit(system, tmp_path / "run", max_steps=1)
    ckpt = torch.load(path, map_location="cpu")
    assert set(ckpt["state_dict"]) == set(system.state_dict()) and ckpt["vsrzoo"]["weights"] == "all"
