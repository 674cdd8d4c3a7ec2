"""DDP on the CPU (two gloo processes): each rank trains on its own clips of the one training stream, validation
means over the ranks equal a one-process validation of the same clips (3 clips: an uneven split), checkpoints are
written by rank 0 only, and a resumed DDP run continues every rank's stream and random states."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from _training_probes import digest, read_records
from test_resume import RECIPE, SAMPLE, load, one_thread, subprocess_env, tiny_config
from zoo.cli import make_cli
from zoo.data.datasets import TrainClipDataset
from zoo.data.degradations import RealBasicVSRDegradation

WORLD, SAMPLES_PER_EPOCH = 2, 8  # 4 samples (batches of 1) per rank and epoch
DATA = {"samples_per_epoch": SAMPLES_PER_EPOCH}


def write_val_clips(folder: Path) -> Path:
    """Three 2-frame clips: different 64x64 regions of the real sample's first frames."""
    frames = sorted(Path(SAMPLE).glob("*.png"))[:2]
    for name, (top, left) in {"a": (40, 60), "b": (150, 300), "c": (250, 500)}.items():
        (folder / name).mkdir(parents=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(folder / name / f"{i:08d}.png"), cv2.imread(str(frame))[top:top + 64, left:left + 64])
    return folder


def ddp_fit(config: Path, *args: str, cwd: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "zoo", "fit", "--config", str(RECIPE), "--config", str(config),
         "--trainer.strategy=ddp", f"--trainer.devices={WORLD}", "--trainer.accelerator=cpu", *args],
        cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    """A 2-rank run of 2 steps (validation at step 2), then its resumption to step 4."""
    root = tmp_path_factory.mktemp("ddp")
    val = write_val_clips(root / "val")
    saves = root / "saves.jsonl"
    data = {**DATA, "val_paths": [str(val)]}
    config = tiny_config(root, prefix=str(root / "batches"), data=data, trainer={
        "max_steps": 2, "plugins": [{"class_path": "_training_probes.ProbeCheckpointIO",
                                     "init_args": {"log": str(saves)}}]})
    ddp_fit(config, cwd=root)
    folder = root / "checkpoints"
    first = {"files": sorted(p.name for p in folder.iterdir()), "saves": read_records(saves),
             "records": [read_records(root / f"batches.rank{r}.jsonl") for r in range(WORLD)]}
    step2 = load(folder / "epoch=0-step=2.ckpt")

    # the same validation clips and the step-2 checkpoint in one process
    (root / "single").mkdir()
    single = tiny_config(root / "single", prefix="single", data=data, record=False)
    with one_thread():
        cli = make_cli(["validate", "--config", str(RECIPE), "--config", str(single), "--ckpt_path",
                        str(folder / "epoch=0-step=2.ckpt")])
    single_metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}

    ddp_fit(config, "--ckpt_path", "last", "--trainer.max_steps=4", cwd=root)
    records = [read_records(root / f"batches.rank{r}.jsonl") for r in range(WORLD)]
    return {"first": first, "step2": step2, "single": single_metrics, "folder": folder,
            "saves": read_records(saves), "resumed": [r[len(f):] for r, f in zip(records, first["records"])]}


def expected_lq(train_seed: int, index: int) -> str:
    """Digest of item ``index`` of the training stream, built in this process."""
    dataset = TrainClipDataset(paths=[SAMPLE], num_frames=4, gt_size=32, scale=4, mirror=True,
                               degradation=RealBasicVSRDegradation(scale=4), samples_per_epoch=SAMPLES_PER_EPOCH,
                               seed=train_seed)
    with one_thread():
        return digest(dataset[index]["lq"])


def test_ranks_train_on_different_items_of_one_stream(ddp) -> None:
    seed = ddp["step2"]["VSRDataModule"]["train_seed"]
    steps = [[r for r in records if "step" in r] for records in ddp["first"]["records"]]
    assert [[r["step"] for r in s] for s in steps] == [[1, 2], [1, 2]]
    digests = [r["lq"] for s in steps for r in s]
    assert len(set(digests)) == 4  # no clip trained twice
    for rank, rank_steps in enumerate(steps):  # rank r, position i: stream item i * world + r
        for record in rank_steps:
            assert record["lq"] == expected_lq(seed, (record["step"] - 1) * WORLD + rank), (rank, record["step"])
    assert steps[0][0]["rng"] != steps[1][0]["rng"]  # the ranks draw different training noise


def test_validation_over_two_ranks_equals_one_process(ddp) -> None:
    logged = [[r["metrics"] for r in records if "val_at" in r] for records in ddp["first"]["records"]]
    assert len(logged[0]) == len(logged[1]) == 1
    assert {"val/psnr", "val/ssim", "val/bicubic_psnr"} <= set(ddp["single"])
    assert logged[0][0] == logged[1][0] == ddp["single"]


def test_checkpoints_are_written_once_by_rank_zero(ddp) -> None:
    first = ddp["first"]
    assert first["files"] == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "last.ckpt"]
    names = [(s["name"], s["step"]) for s in first["saves"]]
    assert names == [("epoch=0-step=1.ckpt", 1), ("last.ckpt", 1), ("epoch=0-step=2.ckpt", 2), ("last.ckpt", 2)]
    assert {s["rank"] for s in ddp["saves"]} == {0}
    assert sorted(p.name for p in ddp["folder"].iterdir()) == [
        "epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"]


def test_a_resumed_ddp_run_continues_each_rank(ddp) -> None:
    step2 = ddp["step2"]
    seed = step2["VSRDataModule"]["train_seed"]
    assert load(ddp["folder"] / "last.ckpt")["global_step"] == 4
    rng = step2["vsrzoo"]["rng"]
    assert len(rng) == WORLD
    for rank, records in enumerate(ddp["resumed"]):
        steps = [r for r in records if "step" in r]
        assert [r["step"] for r in steps] == [3, 4]
        assert steps[0]["rng"] == digest(rng[rank]["torch"])  # this rank's own saved random state
        for record in steps:
            assert record["lq"] == expected_lq(seed, (record["step"] - 1) * WORLD + rank), (rank, record["step"])
