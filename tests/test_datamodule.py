"""VSRDataModule and clip datasets on the embedded real sample (tiny sizes)."""
from __future__ import annotations

from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from zoo.data import (
    EvalClipDataset,
    RealBasicVSRDegradation,
    RealESRGANDegradation,
    TrainClipDataset,
    VSRDataModule,
    stable_seed,
)
from zoo.data.degradations import bicubic_downsample
from zoo.errors import ConfigError, InputError
from zoo.testing import sample_clip_dir

SAMPLE = str(sample_clip_dir())


def _tiny(**overrides) -> VSRDataModule:
    options = dict(train_paths=[SAMPLE], val_paths=[SAMPLE], scale=4, num_frames=4, gt_size=32, batch_size=2,
                   samples_per_epoch=2, val_num_frames=3, val_max_size=64)
    options.update(overrides)
    return VSRDataModule(**options)


def _first(loader) -> dict:
    return next(iter(loader))


def _write_clip(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:08d}.png"), frame[:, :, ::-1])


def test_train_batch_shapes_keys_and_mirror():
    datamodule = _tiny()
    datamodule.setup("fit")
    batch = _first(datamodule.train_dataloader())
    assert set(batch) == {"lq", "gt", "key"}
    assert batch["lq"].shape == (2, 4, 3, 8, 8) and batch["gt"].shape == (2, 4, 3, 32, 32)
    assert batch["lq"].dtype == torch.float32 and batch["gt"].dtype == torch.float32
    for name in ("lq", "gt"):
        assert 0.0 <= float(batch[name].min()) and float(batch[name].max()) <= 1.0
    assert len(batch["key"]) == 2 and all(key.startswith("demo_000/") for key in batch["key"])
    gt = batch["gt"]
    assert torch.equal(gt[:, :2], gt[:, 2:].flip(1))  # two frames loaded, mirrored to four


def test_train_samples_are_reproducible_with_seed_everything():
    def first_batch(seed: int) -> dict:
        L.seed_everything(seed, verbose=False)
        datamodule = _tiny(mirror=False)
        datamodule.setup("fit")
        return _first(datamodule.train_dataloader())

    a, b, c = first_batch(3), first_batch(3), first_batch(4)
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and a["key"] == b["key"]
    assert not torch.equal(a["lq"], c["lq"])
    assert not torch.equal(a["gt"][:, :2], a["gt"][:, 2:].flip(1))  # mirror=False reads 4 frames


def test_train_loader_with_a_worker_process():
    datamodule = _tiny(num_workers=1, samples_per_epoch=2, batch_size=1, train_degradation="bicubic")
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 2 and batches[0]["lq"].shape == (1, 4, 3, 8, 8)
    assert torch.equal(batches[0]["lq"][0], bicubic_downsample(batches[0]["gt"][0], 4))


def test_val_lq_is_identical_across_datamodules_and_depends_on_the_seed():
    batches = []
    for val_seed in (0, 0, 1):
        datamodule = _tiny(val_seed=val_seed)
        datamodule.setup("validate")
        batches.append(_first(datamodule.val_dataloader()))
    first, again, other = batches
    assert first["lq"].shape == (1, 3, 3, 16, 16) and first["gt"].shape == (1, 3, 3, 64, 64)
    assert first["key"] == ["demo_000"]
    assert torch.equal(first["lq"], again["lq"]) and torch.equal(first["gt"], again["gt"])
    assert not torch.equal(first["lq"], other["lq"])
    assert stable_seed(0, "demo_000") == stable_seed(0, "demo_000") != stable_seed(1, "demo_000")


def test_bicubic_protocol_and_full_frames():
    datamodule = _tiny(val_degradation="bicubic", val_max_size=None, val_num_frames=2)
    datamodule.setup("validate")
    batch = _first(datamodule.val_dataloader())
    assert batch["gt"].shape == (1, 2, 3, 360, 640) and batch["lq"].shape == (1, 2, 3, 90, 160)
    assert torch.equal(batch["lq"], bicubic_downsample(batch["gt"], 4))


def test_test_stage_uses_its_own_degradation():
    datamodule = _tiny(test_paths=[SAMPLE], test_degradation="bicubic")
    datamodule.setup("test")
    batch = _first(datamodule.test_dataloader())
    assert torch.equal(batch["lq"], bicubic_downsample(batch["gt"], 4))


def test_paired_folders(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (3, 34, 33, 3), dtype=np.uint8)  # not a multiple of 4: mod-cropped to 32x32
    lq = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    _write_clip(tmp_path / "gt" / "clip", gt)
    _write_clip(tmp_path / "lq" / "clip", lq)
    datamodule = VSRDataModule(val_paths=[str(tmp_path / "gt")], val_lq_paths=[str(tmp_path / "lq")],
                               val_degradation="paired")
    datamodule.setup("validate")
    batch = _first(datamodule.val_dataloader())
    assert batch["key"] == ["clip"] and batch["gt"].shape == (1, 3, 3, 32, 32)
    expected = torch.from_numpy(lq / 255.0).float().permute(0, 3, 1, 2)
    assert torch.equal(batch["lq"][0], expected)

    _write_clip(tmp_path / "bad_lq" / "clip", lq[:, :7])
    with pytest.raises(InputError, match="needs 8x8"):
        EvalClipDataset(paths=[tmp_path / "gt"], degradation="paired", lq_paths=[tmp_path / "bad_lq"])
    _write_clip(tmp_path / "other_lq" / "other", lq)
    with pytest.raises(InputError, match="no LQ clip named 'clip'"):
        EvalClipDataset(paths=[tmp_path / "gt"], degradation="paired", lq_paths=[tmp_path / "other_lq"])
    _write_clip(tmp_path / "short_lq" / "clip", lq[:2])
    with pytest.raises(InputError, match="2 frames"):
        EvalClipDataset(paths=[tmp_path / "gt"], degradation="paired", lq_paths=[tmp_path / "short_lq"])
    with pytest.raises(ConfigError, match="val_lq_paths"):
        VSRDataModule(val_paths=[str(tmp_path / "gt")], val_degradation="paired")


def test_predict_batches_have_lq_and_key_only(tmp_path):
    datamodule = VSRDataModule(predict_paths=[SAMPLE], predict_num_frames=2)
    datamodule.setup("predict")
    batch = _first(datamodule.predict_dataloader())
    assert set(batch) == {"lq", "key"} and batch["lq"].shape == (1, 2, 3, 360, 640) and batch["key"] == ["demo_000"]


def test_short_clips_and_bad_options(tmp_path):
    _write_clip(tmp_path / "short", np.zeros((3, 40, 40, 3), np.uint8))
    with pytest.raises(InputError, match=r"has 3 frames; 4 are needed"):
        TrainClipDataset(paths=[tmp_path / "short"], num_frames=4, gt_size=32, mirror=False)
    with pytest.raises(InputError, match=r"has 3 frames; 5 are needed \(num_frames=10 with mirror"):
        TrainClipDataset(paths=[tmp_path / "short"], num_frames=10, gt_size=32, mirror=True)
    with pytest.raises(InputError, match="smaller than gt_size"):
        TrainClipDataset(paths=[tmp_path / "short"], num_frames=2, gt_size=64)
    with pytest.raises(InputError, match="does not exist"):
        TrainClipDataset(paths=[tmp_path / "missing"], num_frames=2, gt_size=32)
    with pytest.raises(ConfigError, match="divisible"):
        VSRDataModule(train_paths=[SAMPLE], gt_size=30)
    with pytest.raises(ConfigError, match="scale"):
        VSRDataModule(train_paths=[SAMPLE], degradation=RealESRGANDegradation(scale=2))
    with pytest.raises(ConfigError, match="train_paths"):
        VSRDataModule(val_paths=[SAMPLE]).setup("fit")


def test_signature_is_readable_by_jsonargparse():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(VSRDataModule, "data")
    config = parser.parse_args([
        "--data.train_paths=[a, b]", "--data.num_frames=10",
        "--data.degradation=zoo.data.degradations.RealESRGANDegradation",
        "--data.degradation.init_args.jpeg_backend=cv2",
    ])
    init = parser.instantiate_classes(config)
    datamodule = init.data
    assert datamodule.train_paths == ["a", "b"] and datamodule.num_frames == 10
    assert isinstance(datamodule.degradation, RealESRGANDegradation) and datamodule.degradation.jpeg_backend == "cv2"
    default = parser.instantiate_classes(parser.parse_args(["--data.train_paths=[a]"])).data
    assert isinstance(default.degradation, RealBasicVSRDegradation) and default.degradation.deterministic_codec
    official = parser.instantiate_classes(parser.parse_args([
        "--data.train_paths=[a]", "--data.degradation=zoo.data.degradations.RealBasicVSRDegradation",
        "--data.degradation.init_args.deterministic_codec=false",
        '--data.degradation.init_args.overrides={"video1": {"bitrate": [50000, 100000]}}',
    ])).data
    assert not official.degradation.deterministic_codec
    assert official.degradation.table["video1"]["bitrate"] == [50000, 100000]
