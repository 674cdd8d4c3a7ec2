"""Training guards (issue 14): non-finite losses / gradients, gradient clipping in every recipe, checkpoints of another
family, and training-data errors, each reaching the user as one line.

Tiny networks only (the families' ``tiny`` sizes), 1-2 optimizer steps, LQ of 8x8 pixels cut from the real sample.
"""
from __future__ import annotations

import inspect
import math
import warnings
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests._tiny import VIDEOGIGAGAN_TINY, tiny_discriminator, tiny_net
from zoo.cli import main
from zoo.data.datamodule import VSRDataModule
from zoo.errors import TrainingError, WeightsError
from zoo.models.videogigagan.system import VideoGigaGAN
from zoo.systems.base import VSRSystem
from zoo.testing import sample_clip_dir

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_clip_dir()

TINY_NET = {**VIDEOGIGAGAN_TINY["net"], "channel_mults": [1, 2], "attn_levels": [1]}
TINY_VIDEOGIGAGAN = {
    "trainer": {"accelerator": "cpu", "max_steps": 2, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "callbacks": []},
    "model": {"init_args": {"lpips_weight": 0, "net": {"init_args": TINY_NET},
                            "discriminator": {"init_args": {"base_channels": 8, "channel_mults": [1, 2, 2]}}}},
    "data": {"init_args": {"num_frames": 2, "gt_size": 32, "batch_size": 1, "samples_per_epoch": 2,
                           "train_degradation": "bicubic", "val_degradation": "bicubic", "val_num_frames": 2,
                           "val_max_size": 32}},
}
TINY_REALBASICVSR = {
    "trainer": TINY_VIDEOGIGAGAN["trainer"],
    "model": {"init_args": {"net": {"init_args": {"mid_channels": 4, "num_propagation_blocks": 1,
                                                  "num_cleaning_blocks": 1}}}},
    "data": {"init_args": {**TINY_VIDEOGIGAGAN["data"]["init_args"], "mirror": False}},
}


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the recipes name the sample by its path in the repository


def _write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _one_line_error(code: int, err: str, *expected: str) -> str:
    """The run exited 2 with exactly one ``error:`` line (the last one), no traceback, holding ``expected``."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-5:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _fit(capsys: pytest.CaptureFixture, tmp_path: Path, recipe: str, tiny: dict, *args: str) -> tuple[int, str]:
    config = _write(tmp_path / "tiny.yaml", tiny)
    code = main(["fit", "--config", recipe, "--config", config, f"--trainer.default_root_dir={tmp_path}", *args])
    return code, capsys.readouterr().err


def _tiny_system(**kwargs: object) -> VideoGigaGAN:
    return VideoGigaGAN(net=tiny_net(), discriminator=tiny_discriminator(), lpips_weight=0, **kwargs)


def _tiny_data() -> VSRDataModule:
    return VSRDataModule(train_paths=[str(SAMPLE)], num_frames=2, gt_size=32, mirror=False, batch_size=1,
                         samples_per_epoch=2, train_degradation="bicubic")


def _trainer(tmp_path: Path, max_steps: int, **kwargs: object):  # noqa: ANN202 - lightning.Trainer
    import lightning as L

    return L.Trainer(accelerator="cpu", max_steps=max_steps, limit_val_batches=0, num_sanity_val_steps=0,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, **kwargs)


# ------------------------------------------------------------------------------------------------ non-finite values
def test_nan_loss_stops_fit_with_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """An Inf loss term (its weight overflows float32) stops `lightning fit` at step 0 with one line naming the term:
    the TrainingError raised inside Lightning's fit loop reaches the CLI unwrapped."""
    code, err = _fit(capsys, tmp_path, "zoo/realbasicvsr.yaml", TINY_REALBASICVSR, "--model.init_args.pixel_weight=1e39")
    line = _one_line_error(code, err, "non-finite loss at step 0: pixel = inf", "nonfinite: skip")
    assert "(finite: clean = " in line  # the finite terms are listed too


class _RecordingGAN(VideoGigaGAN):
    """Records, per optimizer step, the gradient norm before and after the base's hook (None: the update was
    skipped and its gradients dropped)."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm_in = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
        super().on_before_optimizer_step(optimizer)
        grads = [p.grad for p in params if p.grad is not None]
        norm_out = float(torch.nn.utils.get_total_norm(grads)) if grads else None
        self.__dict__.setdefault("norms", []).append((optimizer is self.trainer.optimizers[1],
                                                      norm_in, norm_out))


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two iterations of the tiny GAN with NaN generator gradients, ``nonfinite='skip'`` and ``grad_clip_norm``;
    its checkpoint."""
    tmp = tmp_path_factory.mktemp("skip")
    torch.manual_seed(0)
    system = _RecordingGAN(net=tiny_net(), discriminator=tiny_discriminator(), lpips_weight=0, nonfinite="skip",
                           max_nonfinite_skips=5, grad_clip_norm=1e-4)
    poisoned = next(p for p in system.net_g.parameters() if p.requires_grad)
    poisoned.register_hook(lambda grad: torch.full_like(grad, math.nan))
    g_before = {k: v.clone() for k, v in system.net_g.state_dict().items()}
    d_before = {k: v.clone() for k, v in system.net_d.state_dict().items()}
    trainer = _trainer(tmp, max_steps=4)  # manual optimisation: G and D steps are counted, 2 iterations
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(system, datamodule=_tiny_data())
    ckpt = tmp / "videogigagan.ckpt"
    trainer.save_checkpoint(ckpt)
    return {"system": system, "trainer": trainer, "g_before": g_before, "d_before": d_before,
            "warnings": [str(w.message) for w in caught], "ckpt": ckpt}


def test_nan_gradient_is_skipped_and_counted(skipped_run: dict) -> None:
    system, trainer = skipped_run["system"], skipped_run["trainer"]
    assert system.nonfinite_skipped == 2  # the generator update of each iteration
    assert float(trainer.callback_metrics["train/nonfinite_skipped"]) == 2.0
    g_after, d_after = system.net_g.state_dict(), system.net_d.state_dict()
    assert all(torch.equal(g_after[k], v) for k, v in skipped_run["g_before"].items())  # G never stepped
    assert any(not torch.equal(d_after[k], v) for k, v in skipped_run["d_before"].items())  # D trained
    assert all(torch.isfinite(p).all() for p in system.parameters())
    report = [w for w in skipped_run["warnings"] if "optimizer updates were skipped" in w]
    assert len(report) == 1 and report[0].startswith("2 optimizer updates") and "non-finite gradient" in report[0]
    assert "net_g." in report[0]  # names the parameter
    saved = torch.load(skipped_run["ckpt"], map_location="cpu", weights_only=False)
    assert saved["vsrzoo"]["nonfinite_skipped"] == 2 and saved["vsrzoo"]["family"] == "videogigagan"


def test_skips_are_limited() -> None:
    system = _tiny_system(nonfinite="skip", max_nonfinite_skips=1)
    finite = torch.tensor(1.0)
    assert system.check_losses({"charbonnier": finite, "gan_g": finite})
    assert not system.check_losses({"charbonnier": torch.tensor(math.inf), "gan_g": finite})
    assert system.nonfinite_skipped == 1
    with pytest.raises(TrainingError, match=r"2 updates skipped .* max_nonfinite_skips=1; the last: non-finite loss "
                                            r"at step 0: charbonnier = nan \(finite: gan_g = 1\)"):
        system.check_losses({"charbonnier": torch.tensor(math.nan), "gan_g": finite})


class _TinyAutomatic(VSRSystem):
    """A per-frame conv + PixelShuffle x2 system with automatic optimisation, whose training step checks its loss
    like the automatic families' (``check_losses`` then ``None`` on a skip)."""

    def __init__(self, **guards: object) -> None:
        super().__init__(scale=2, **guards)
        self.net_g = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        lq, gt = batch["lq"], batch["gt"]
        sr = self.net_g(lq.flatten(0, 1)).unflatten(0, lq.shape[:2])
        loss = torch.nn.functional.l1_loss(sr, gt)
        if not self.check_losses({"loss_l1": loss}):
            return None
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net_g.parameters(), lr=1e-3)


class _TinyManual(_TinyAutomatic):
    def __init__(self, **guards: object) -> None:
        super().__init__(**guards)
        self.automatic_optimization = False


def _tiny_data_x2() -> VSRDataModule:
    return VSRDataModule(train_paths=[str(SAMPLE)], scale=2, num_frames=2, gt_size=16, mirror=False, batch_size=1,
                         samples_per_epoch=2, train_degradation="bicubic")


def test_automatic_optimization_gradient_check_skips_then_stops(tmp_path: Path) -> None:
    """With automatic optimisation the gradients are checked in on_before_optimizer_step, before the trainer's own
    clipping: 'skip' leaves the weights (and Adam's state) untouched, 'stop' raises naming the parameter and loss."""
    torch.manual_seed(0)
    system = _TinyAutomatic(nonfinite="skip")
    weight = system.net_g[0].weight
    handle = weight.register_hook(lambda grad: torch.full_like(grad, math.nan))
    before = {k: v.clone() for k, v in system.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(tmp_path, max_steps=2, gradient_clip_val=1.0).fit(system, datamodule=_tiny_data_x2())
    assert system.nonfinite_skipped == 2
    assert all(torch.equal(system.state_dict()[k], v) for k, v in before.items())
    system.nonfinite = "stop"
    with pytest.raises(TrainingError, match=r"^non-finite gradient at step 0: net_g\.0\.weight \(losses: "
                                            r"loss_l1 = [0-9.]+\); lower the learning rate"):
        _trainer(tmp_path, max_steps=1).fit(system, datamodule=_tiny_data_x2())
    handle.remove()


@pytest.mark.parametrize("family", ["sateco", "dc_vsr", "upscale_a_video"])
def test_automatic_families_skip_a_nan_loss(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The diffusion families' training_step returns None (Lightning skips backward and step) for a NaN loss with
    'skip', and raises naming its loss term with 'stop'."""
    from zoo.models.dc_vsr.system import DCVSR
    from zoo.models.sateco.system import SATeCo
    from zoo.models.upscale_a_video.system import UpscaleAVideo

    cls, loss_fn, term, kwargs = {
        "sateco": (SATeCo, "stage_loss", "loss_upscaler", {"stage": "upscaler", "load_text_encoder": False}),
        "dc_vsr": (DCVSR, "diffusion_loss", "loss_edm", {}),
        "upscale_a_video": (UpscaleAVideo, "diffusion_loss", "loss_v", {"load_text_encoder": False}),
    }[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        system = cls(variant="tiny", nonfinite="skip", **kwargs)
    monkeypatch.setattr(cls, loss_fn, lambda self, *args: torch.tensor(math.nan, requires_grad=True))
    batch = {"lq": torch.rand(1, 2, 3, 8, 8), "gt": torch.rand(1, 2, 3, 32, 32)}
    assert system.training_step(batch, 0) is None
    assert system.nonfinite_skipped == 1
    system.nonfinite = "stop"
    with pytest.raises(TrainingError, match=rf"^non-finite loss at step 0: {term} = nan; "):
        system.training_step(batch, 0)


# ------------------------------------------------------------------------------------------------ gradient clipping
def test_manual_optimization_clips_with_grad_clip_norm(skipped_run: dict) -> None:
    """grad_clip_norm clips each manual step that is taken (here D's; G's NaN gradients were dropped instead)."""
    norms = skipped_run["system"].__dict__["norms"]
    assert [is_d for is_d, _, _ in norms] == [False, True, False, True]  # G, D, G, D
    for is_d, norm_in, norm_out in norms:
        if is_d:
            assert norm_in > 1e-4 and norm_out <= 1e-4 * 1.001, (norm_in, norm_out)  # clipping had work to do
        else:
            assert math.isnan(norm_in) and norm_out is None


def test_trainer_clipping_with_a_manual_family_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """The CLI's before_fit refuses trainer.gradient_clip_val for a manual-optimisation system (Lightning would raise
    a MisconfigurationException with a traceback), in one line naming the option to use; automatic systems pass."""
    from zoo.cli import _check_manual_clipping, _run_guarded

    trainer = _trainer(tmp_path, max_steps=1, gradient_clip_val=0.5)
    code = _run_guarded(_check_manual_clipping, _TinyManual(), trainer)
    _one_line_error(code, capsys.readouterr().err, "trainer.gradient_clip_val=0.5", "_TinyManual optimises manually",
                    "model.init_args.grad_clip_norm: 0.5")
    _check_manual_clipping(_TinyAutomatic(), trainer)  # automatic optimisation: Lightning clips


RECIPES = sorted([*ROOT.glob("zoo/*.yaml"), *ROOT.glob("configs/*/*.yaml")])


@pytest.mark.parametrize("recipe", [p for p in RECIPES if "class_path" in p.read_text() and "model:" in p.read_text()
                                    and "benchmarks" not in p.parts], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_states_its_gradient_clipping(recipe: Path) -> None:
    """Each standalone recipe states its clipping: `trainer.gradient_clip_val` (automatic optimisation) or the
    system's `grad_clip_norm` (manual optimisation, where the trainer's must be unset)."""
    config = yaml.safe_load(recipe.read_text())
    class_path = config.get("model", {}).get("class_path")
    if class_path is None:
        pytest.skip("an override composed on a recipe")
    module, name = class_path.rsplit(".", 1)
    manual = "grad_clip_norm" in inspect.signature(getattr(import_module(module), name)).parameters
    trainer, init_args = config.get("trainer", {}), config["model"]["init_args"]
    if manual:
        assert "grad_clip_norm" in init_args, recipe
        assert trainer.get("gradient_clip_val") is None, recipe
    else:
        assert "gradient_clip_val" in trainer, recipe
    overrides = [p for p in RECIPES if p.parent.name == recipe.stem or p.parent == recipe.parent]
    for override in overrides:  # configs composed on it do not switch trainer clipping on for a manual system
        if manual and "class_path: zoo.models" not in override.read_text():
            assert (yaml.safe_load(override.read_text()) or {}).get("trainer", {}).get("gradient_clip_val") is None


# ------------------------------------------------------------------------------------------------ checkpoint families
@pytest.mark.parametrize("family", ["realbasicvsr", "upscale_a_video", "sateco", "dc_vsr", "realesrgan"])
def test_checkpoint_of_another_family_is_refused(family: str, skipped_run: dict) -> None:
    from zoo import load_pretrained

    ckpt = skipped_run["ckpt"]
    with pytest.raises(WeightsError) as info:
        load_pretrained(family, ckpt)
    assert str(info.value) == (f"{ckpt} is a videogigagan checkpoint; --model {family} cannot load it "
                               "(use --model videogigagan)")


def test_upscale_with_another_familys_checkpoint_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                             skipped_run: dict) -> None:
    ckpt = skipped_run["ckpt"]
    code = main(["upscale", str(SAMPLE), "-o", str(tmp_path / "out.mp4"), "--model", "realbasicvsr", "--weights",
                 str(ckpt), "--no-progress"])
    _one_line_error(code, capsys.readouterr().err,
                    f"{ckpt} is a videogigagan checkpoint; --model realbasicvsr cannot load it (use --model videogigagan)")
    assert not (tmp_path / "out.mp4").exists()


def test_fit_ckpt_path_of_another_family_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                     skipped_run: dict) -> None:
    ckpt = skipped_run["ckpt"]
    code, err = _fit(capsys, tmp_path, "zoo/realbasicvsr.yaml", TINY_REALBASICVSR, f"--ckpt_path={ckpt}")
    _one_line_error(code, err, f"{ckpt} is a videogigagan checkpoint; the realbasicvsr system (RealBasicVSR) cannot "
                               "load it (use the videogigagan recipe, e.g. --config zoo/videogigagan.yaml)")


# ------------------------------------------------------------------------------------------------ training data
def _clip(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """A clip folder of real frames of the sample cropped to ``sizes`` ((w, h) per frame)."""
    folder.mkdir(parents=True)
    frames = sorted(SAMPLE.glob("*.png"))
    for index, (w, h) in enumerate(sizes):
        image = np.asarray(Image.open(frames[index]))[:h, :w]
        Image.fromarray(image).save(folder / f"{index:08d}.png")
    return folder


def _mixed_size_video(path: Path) -> Path:
    """A video whose frame size changes midway: two MPEG-TS streams of real sample crops (32x32, then 32x24)
    concatenated byte-wise (FFmpeg probes the container by content, whatever the extension)."""
    import io

    import av

    frames = sorted(SAMPLE.glob("*.png"))

    def stream(h: int, w: int, first: int) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts") as container:
            video = container.add_stream("mpeg2video", rate=25)
            video.width, video.height, video.pix_fmt = w, h, "yuv420p"
            for index in range(first, first + 3):
                image = np.ascontiguousarray(np.asarray(Image.open(frames[index]).convert("RGB"))[:h, :w])
                container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(video.encode())
        return buffer.getvalue()

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stream(32, 32, 0) + stream(24, 32, 3))
    return path


@pytest.mark.parametrize("case", ["missing_train", "missing_val", "short", "small", "mixed", "mixed_video"])
def test_training_data_errors_are_one_line(case: str, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Each bad-data case stops Lightning's fit (in the datamodule's setup) with one line naming the clip's key and
    path, through the same guard that ``lightning fit`` runs under (zoo.cli._run_guarded)."""
    from zoo.cli import _run_guarded

    data = tmp_path / "data"
    options: dict = {"train_paths": [str(SAMPLE)]}
    if case == "missing_train":
        options["train_paths"] = [str(data / "nope")]
        expected = [f"training path does not exist: {data / 'nope'}"]
    elif case == "missing_val":
        options["val_paths"] = [str(data / "nope")]
        expected = [f"validation path does not exist: {data / 'nope'}"]
    elif case == "short":
        clip = _clip(data / "short", [(64, 64)] * 2)
        options.update(train_paths=[str(clip)], num_frames=3)
        expected = [f"training clip 'short' ({clip}) has 2 frames; 3 are needed (num_frames=3)"]
    elif case == "small":
        clip = _clip(data / "small", [(64, 24)] * 2)
        options["train_paths"] = [str(clip)]
        expected = [f"training clip 'small' ({clip}) is 64x24, smaller than gt_size 32"]
    elif case == "mixed":
        clip = _clip(data / "mixed", [(64, 64), (64, 48)])
        options["train_paths"] = [str(clip)]
        expected = [f"training clip 'mixed' ({clip}): frames of different sizes", "00000001.png is 64x48"]
    else:  # found while decoding (counting the frames when the training set opens)
        clip = _mixed_size_video(data / "mixed.mkv")
        options["train_paths"] = [str(clip)]
        expected = [f"training clip 'mixed' ({clip}): frame ", "is 32x24, the first frame is 32x32"]
    settings = {"num_frames": 2, "gt_size": 32, "mirror": False, "samples_per_epoch": 2, "train_degradation": "bicubic",
                "val_degradation": "bicubic", **options}
    code = _run_guarded(_trainer(tmp_path, max_steps=1).fit, _TinyAutomatic(), VSRDataModule(scale=2, **settings))
    _one_line_error(code, capsys.readouterr().err, *expected)


def _instantiate(value: object) -> object:
    if isinstance(value, dict) and "class_path" in value:
        module, name = value["class_path"].rsplit(".", 1)
        return getattr(import_module(module), name)(**value.get("init_args", {}))
    return value


@pytest.mark.parametrize("recipe", sorted(ROOT.glob("zoo/*.yaml")), ids=lambda p: p.name)
def test_recipe_default_data_passes_the_clip_checks(recipe: Path) -> None:
    """Every recipe's own data (the embedded 640x360 sample) opens for fit: clip length and gt_size fit it."""
    init_args = yaml.safe_load(recipe.read_text())["data"]["init_args"]
    init_args = {k: _instantiate(v) for k, v in init_args.items() if not (isinstance(v, str) and "${" in v)}
    data = VSRDataModule(**init_args)
    data.setup("fit")
    assert data.train_set is not None and data.val_set is not None
