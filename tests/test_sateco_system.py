"""SATeCo's four training stages on tiny networks and a real batch: each stage trains only its own modules and its loss
falls; the stage recipes chain through ``init_from``; the ablation recipes run; checkpoints built on a Stable Diffusion
folder hold the SATeCo modules only and load back; the sampler is deterministic and independent of chunking."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from zoo.data.degradations import bicubic_downsample
from zoo.data.video_io import open_video
from zoo.errors import ConfigError, WeightsError
from zoo.hub import family
from zoo.models.sateco.load import build_pipeline, load_sateco_pipeline
from zoo.models.sateco.sampling import SamplingOptions
from zoo.models.sateco.system import STAGES, SATeCo
from zoo.systems.base import EvalOptions
from zoo.testing import sample_clip_dir, write_sd_base_folder, write_sd_x4_folder

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = family("sateco").variant("tiny")
FAST = SamplingOptions(num_inference_steps=2, strength=0.5, tile=None)
NO_METRICS = EvalOptions(lpips=False, warping_error=False)


@pytest.fixture(scope="module")
def real_batch() -> dict:
    """6 real frames of the embedded sample: a 64x64 GT crop and its MATLAB-bicubic x1/4 LQ (BI, the paper's tables)."""
    frames = open_video(sample_clip_dir()).read(stop=6)  # (t, 3, 360, 640) in [0, 1]
    gt = frames[None, :, :, 148:212, 288:352].contiguous()
    return {"lq": bicubic_downsample(gt, 4), "gt": gt}


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    """A tiny stable-diffusion-2-1-base-layout folder (random weights, CLIP text encoder, tokenizer, PNDM scheduler)."""
    return write_sd_base_folder(tmp_path_factory.mktemp("sd") / "stable-diffusion-2-1-base", unet=TINY["unet"],
                                vae=TINY["vae"], text_encoder=TINY["text_encoder"])


def _system(stage: str, **kwargs) -> SATeCo:  # noqa: ANN003
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random base / untrained upscaler / no text encoder
        torch.manual_seed(0)
        options = dict(variant="tiny") if "pretrained" not in kwargs else {}
        return SATeCo(stage=stage, sampling=FAST, evaluation=NO_METRICS, **options, **kwargs)


def _loss(system: SATeCo, batch: dict, seeds=range(4)) -> float:  # noqa: ANN001
    with torch.no_grad():
        values = []
        for seed in seeds:
            torch.manual_seed(seed)
            values.append(float(system.stage_loss(batch["lq"], batch["gt"])))
    return sum(values) / len(values)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_trains_only_its_modules_and_its_loss_falls(stage, real_batch):
    system = _system(stage, lr=2e-3, decoder_latents="denoised")
    system.train()
    before = {k: v.detach().clone() for k, v in system.state_dict().items()}
    optimizer = system.configure_optimizers()
    loss0 = _loss(system, real_batch)
    torch.manual_seed(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(15):
            optimizer.zero_grad()
            system.stage_loss(real_batch["lq"], real_batch["gt"]).backward()
            optimizer.step()
    loss1 = _loss(system, real_batch)
    assert loss1 < 0.9 * loss0, (stage, loss0, loss1)
    prefixes = tuple(f"net_g.{name}." for name in STAGES[stage])
    after = system.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(prefixes) for k in changed), sorted(changed - {
        k for k in changed if k.startswith(prefixes)})[:5]
    # every trainable parameter belongs to the stage; the frozen base and other modules stay in eval mode
    assert {n for n, p in system.named_parameters() if p.requires_grad} == {
        n for n, _ in system.named_parameters() if n.startswith(prefixes)}
    assert not system.net_g.unet.training and not system.net_g.vae.training


def test_stage_options_are_checked():
    with pytest.raises(ConfigError, match="stage must be"):
        _system("gan")
    with pytest.raises(ConfigError, match="no stage 3"):
        _system("vae", vae_adapters=False)
    with pytest.raises(WeightsError, match="init_from checkpoint not found"):
        _system("unet", init_from="/nonexistent/last.ckpt")


def _fit(args: list[str], root: Path):  # noqa: ANN202
    from _tiny import fit_recipe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_recipe(args + ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                                  "--trainer.callbacks.save_last=true"], root)


def test_the_four_stage_recipes_chain_through_init_from(monkeypatch, tmp_path):
    """Each recipe (+ the tiny override) trains one step on the embedded real frames and writes last.ckpt; the next
    stage starts from it: the modules earlier stages trained arrive unchanged and stay frozen."""
    monkeypatch.chdir(ROOT)
    tiny = ["--config", "configs/sateco/tiny_cpu.yaml"]
    recipes = [("upscaler", ["--config", "zoo/sateco.yaml", "--config", "configs/sateco/stage1_upscaler.yaml"]),
               ("unet", ["--config", "zoo/sateco.yaml"]),
               ("vae", ["--config", "zoo/sateco.yaml", "--config", "configs/sateco/stage3_vae.yaml"]),
               ("refiner", ["--config", "zoo/sateco.yaml", "--config", "configs/sateco/stage4_refiner.yaml"])]
    previous, previous_state = None, None
    for stage, recipe in recipes:
        init = [f"--model.init_args.init_from={previous}"] if previous else []
        cli, ckpt = _fit(recipe + tiny + init, tmp_path / stage)
        assert cli.model.hparams.stage == stage
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        if previous_state is not None:
            earlier = [k for k in previous_state if not k.startswith(tuple(f"net_g.{m}." for m in STAGES[stage]))]
            assert all(torch.equal(previous_state[k], state[k]) for k in earlier)
        previous, previous_state = ckpt, state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = load_sateco_pipeline(previous)
    assert all(torch.equal(v, previous_state[f"net_g.{k}"]) for k, v in pipeline.state_dict().items())


@pytest.mark.parametrize("ablation", ["no_sfa", "no_tfa", "unet_only", "pixelshuffle_upscaler", "refiner_w0",
                                      "refiner_w05", "refiner_w1"])
def test_ablation_recipes_run(ablation, monkeypatch, tmp_path):
    from zoo.cli import make_cli

    monkeypatch.chdir(ROOT)
    stage = ["--config", "configs/sateco/stage4_refiner.yaml"] if ablation.startswith("refiner") else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = make_cli(["--config", "zoo/sateco.yaml", *stage, "--config", "configs/sateco/tiny_cpu.yaml",
                        "--config", f"configs/sateco/ablation_{ablation}.yaml", "--model.init_args.init_from=null",
                        "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
                        "--trainer.enable_progress_bar=false"], run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    net = cli.model.net_g
    adapters = list(net.unet_adapters.adapters)
    expect = {"no_sfa": lambda: all(a.sfa is None and a.tfa is not None for a in adapters),
              "no_tfa": lambda: all(a.tfa is None and a.sfa is not None for a in adapters),
              "unet_only": lambda: net.vae_adapters is None,
              "pixelshuffle_upscaler": lambda: len(net.upscaler.blocks) == 0,
              "refiner_w0": lambda: net.refiner.weight == 0.0,
              "refiner_w05": lambda: net.refiner.weight == 0.5,
              "refiner_w1": lambda: net.refiner.weight == 1.0}[ablation]
    assert expect()


def test_checkpoints_on_a_stable_diffusion_folder_hold_the_sateco_modules_only(sd_folder, tmp_path):
    import lightning as L

    system = _system("upscaler", pretrained=str(sd_folder))
    assert system.net_g.text_encoder is not None
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(system)
    ckpt = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    keys = set(saved["state_dict"])
    modules = ("upscaler", "latent_encoder", "unet_adapters", "vae_adapters", "refiner")
    assert keys and all(k.startswith(tuple(f"net_g.{m}." for m in modules)) for k in keys)
    assert {k.split(".")[1] for k in keys} == set(modules)
    assert saved["vsrzoo"]["weights"] == "trained" and saved["vsrzoo"]["pretrained"] == str(sd_folder)
    pipeline = load_sateco_pipeline(ckpt)
    own = system.net_g.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in pipeline.state_dict().items())
    # the next stage starts from it
    chained = _system("unet", pretrained=str(sd_folder), init_from=str(ckpt))
    assert all(torch.equal(v, own[f"upscaler.{k}"]) for k, v in chained.net_g.upscaler.state_dict().items())
    # the base folder moved: one clear line, and the override
    moved = tmp_path / "moved"
    sd_folder.rename(moved)
    try:
        with pytest.raises(WeightsError, match="not found; pass its new location with the 'pretrained' option"):
            load_sateco_pipeline(ckpt)
        assert load_sateco_pipeline(ckpt, pretrained=str(moved)).text_encoder is not None
    finally:
        moved.rename(sd_folder)


def test_missing_or_wrong_pretrained_folder_gives_one_clear_line(sd_folder, tmp_path):
    with pytest.raises(WeightsError, match="SATeCo pretrained folder not found"):
        build_pipeline(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "unet").mkdir()
    (broken / "unet" / "config.json").write_text((sd_folder / "unet" / "config.json").read_text())
    with pytest.raises(WeightsError, match=r"vae/config.json not found"):
        build_pipeline(broken)
    x4 = write_sd_x4_folder(tmp_path / "x4", unet=family("upscale_a_video").variant("tiny")["unet"],
                            vae=family("upscale_a_video").variant("tiny")["vae"],
                            text_encoder=family("upscale_a_video").variant("tiny")["text_encoder"])
    with pytest.raises(WeightsError, match="Stable Diffusion 2.x-base uses 0.00085 -> 0.012"):
        build_pipeline(x4)


def test_sampling_is_deterministic_and_independent_of_chunking_when_one_window_covers_the_clip(real_batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        pipe = build_pipeline(None, variant="tiny")
    with torch.no_grad():
        for adapter in [*pipe.unet_adapters.adapters, *pipe.vae_adapters.adapters]:  # live adapters
            adapter.out.weight.normal_(0, 0.05)
        pipe.refiner.conv_out.weight.normal_(0, 0.05)
    lq = real_batch["lq"]
    run = dict(num_inference_steps=4, strength=0.5, seed=3)
    a = pipe(lq, window=6, vae_chunk=6, tile=None, **run)
    assert a.shape == (1, 6, 3, 64, 64) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, pipe(lq, window=6, vae_chunk=6, tile=None, **run))
    assert torch.equal(a, pipe(lq, window=None, vae_chunk=None, tile=None, **run))
    assert torch.equal(a, pipe(lq, window=8, window_overlap=2, vae_chunk=12, tile=64, tile_overlap=8, **run))
    assert not torch.equal(a, pipe(lq, window=6, tile=None, **{**run, "seed": 4}))
    # overlapping windows and tiles are blended: same shape, close to the single-window result
    blended = pipe(lq, window=4, window_overlap=2, tile=8, tile_overlap=4, vae_chunk=6, **run)
    assert blended.shape == a.shape and (blended - a).abs().mean() < 0.2
    with pytest.raises(ConfigError, match="strength"):
        pipe(lq, strength=0.0)
    with pytest.raises(ConfigError, match="runs no denoising step"):
        pipe(lq, num_inference_steps=2, strength=0.1)


@pytest.mark.parametrize("stage", ["unet", "vae"])
def test_gradient_checkpointing_gives_the_same_gradients(stage, real_batch):
    """The adapters are forward hooks on the up blocks; recomputed (checkpointed) blocks must see the same guidance,
    so every trained parameter gets the same gradient with and without checkpointing."""
    grads = []
    lq, gt = real_batch["lq"][..., :8, :8], real_batch["gt"][..., :32, :32]  # a 32x32 crop keeps it quick
    for checkpointing in (False, True):
        system = _system(stage, gradient_checkpointing=checkpointing, decoder_latents="gt")
        system.train()
        torch.manual_seed(7)
        system.stage_loss(lq, gt).backward()
        grads.append({n: p.grad for n, p in system.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and all(g is not None for g in grads[0].values())
    # a fresh adapter's zero convolution is where the gradient arrives first (the rest sits behind it)
    assert all(grads[0][n].abs().sum() > 0 for n in grads[0] if n.endswith(".out.weight"))
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_fresh_sampler_is_stable_diffusion_img2img_of_the_upscaled_frame(sd_folder, real_batch):
    """Parity with diffusers' own StableDiffusionImg2ImgPipeline: with fresh (zero) adapters, refiner weight 0 and one
    frame, SATeCo's sampler is SD img2img of the latent of X_u (same DDIM schedule, start step, noise, text tokens and
    VAE decoding), so the outputs agree to float rounding."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    from zoo.diffusion.vae import diffusers_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = build_pipeline(sd_folder)
    pipe.refiner.weight = 0.0  # X_H = X_d (the refiner's residual starts at zero)
    lq = real_batch["lq"][:, :1]
    steps, strength, seed = 4, 0.5, 5
    ours = pipe(lq, num_inference_steps=steps, strength=strength, seed=seed, window=None, tile=None)
    with torch.no_grad():
        x_u = pipe.upscale_lq(lq, tile=None)
        z = diffusers_encoder(pipe.vae)(x_u * 2 - 1)[:, 0]
    reference = StableDiffusionImg2ImgPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    expected = reference(prompt="", image=z, strength=strength, num_inference_steps=steps, guidance_scale=1.0,
                         generator=torch.Generator().manual_seed(seed), output_type="pt").images
    assert ours.shape == (1, 1, 3, 64, 64) and expected.shape == (1, 3, 64, 64)
    torch.testing.assert_close(ours[:, 0], expected, atol=2e-5, rtol=1e-4)
