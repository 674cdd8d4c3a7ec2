"""Resuming training: a `lightning fit` killed with SIGKILL (half way through writing a checkpoint) and restarted with
``--ckpt_path last`` ends bit for bit where the uninterrupted run ends (CPU): model, EMA, optimizer, data order,
degradations and random states. Checkpoints are written atomically (:mod:`zoo.systems.checkpointing`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from _training_probes import ProbeCheckpointIO, read_records
from zoo.cli import make_cli
from zoo.data.datamodule import TrainSampler, VSRDataModule
from zoo.systems.checkpointing import AtomicCheckpointIO, stale_temporary_files
from zoo.testing import sample_clip_dir

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
RECIPE = ROOT / "zoo" / "realbasicvsr.yaml"
SAMPLE = str(sample_clip_dir())
STEPS, KILL_STEP = 6, 4  # 4 batches an epoch: the resumed run finishes epoch 0 and runs 2 steps of epoch 1


def tiny_config(folder: Path, *, prefix: str, trainer: dict | None = None, data: dict | None = None,
                record: bool = True) -> Path:
    """A tiny RealBasicVSR run composed after the recipe: checkpoint every step, validation every 2 steps, the
    batches recorded by ``_training_probes.BatchRecorder`` into ``<prefix>.rank<r>.jsonl`` (unless not ``record``);
    ``trainer`` and ``data`` override. Written to ``<folder>/<name of prefix>.yaml``."""
    config = {
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": STEPS, "val_check_interval": 2,
            "num_sanity_val_steps": 0, "log_every_n_steps": 1, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": False, "default_root_dir": str(folder),
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": -1}},
                *([{"class_path": "_training_probes.BatchRecorder", "init_args": {"prefix": prefix}}] if record else []),
            ],
            **(trainer or {}),
        },
        "model": {"init_args": {
            "net": {"class_path": "zoo.models.realbasicvsr.net.RealBasicVSRNet",
                    "init_args": {"mid_channels": 8, "num_propagation_blocks": 1, "num_cleaning_blocks": 1,
                                  "dynamic_refine_thres": 255.0, "spynet_pretrained": None}},
            "ema_decay": 0.9, "lr_g": 1e-3,
            "evaluation": {"lpips": False, "warping_error": False, "num_log_images": 0},
        }},
        "data": {"init_args": {
            "train_paths": [SAMPLE], "val_paths": [SAMPLE], "num_frames": 4, "gt_size": 32, "batch_size": 1,
            "num_workers": 0, "samples_per_epoch": 4, "val_num_frames": 2, "val_max_size": 32, **(data or {}),
        }},
    }
    path = folder / f"{Path(prefix).name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def subprocess_env() -> dict:
    """The environment of `lightning fit` subprocesses: this worktree's zoo and the probes importable, one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


@contextmanager
def one_thread():
    """Run in-process training with the single intra-op thread of the subprocesses (same float summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_in_process(*args: str) -> None:
    with one_thread():
        make_cli(["fit", "--config", str(RECIPE), *args])


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same(a: object, b: object, where: str = "") -> None:
    """Exact equality of nested checkpoint values (tensors with torch.equal, dtype and shape included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape") and hasattr(a, "dtype"):  # numpy arrays of the numpy RNG state
        assert (a == b).all(), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """One killed run (a subprocess SIGKILLed half way through writing step 4's last.ckpt), its resumption and an
    uninterrupted run of the same 6 steps (both in this process)."""
    root = tmp_path_factory.mktemp("resume")
    killed, straight = root / "killed", root / "straight"
    killed.mkdir()
    straight.mkdir()
    config = tiny_config(killed, prefix=str(killed / "batches"))
    kill = killed / "kill.yaml"
    kill.write_text(yaml.safe_dump({"trainer": {"plugins": [
        {"class_path": "_training_probes.ProbeCheckpointIO", "init_args": {"kill_at_step": KILL_STEP}}]}}))
    process = subprocess.run(
        [sys.executable, "-m", "zoo", "fit", "--config", str(RECIPE), "--config", str(config), "--config", str(kill)],
        cwd=root, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    folder = killed / "checkpoints"
    after_kill = {"files": sorted(p.name for p in folder.iterdir()), "last": load(folder / "last.ckpt"),
                  "stale": stale_temporary_files(folder)}
    records_killed = read_records(killed / "batches.rank0.jsonl")

    fit_in_process("--config", str(config), "--ckpt_path", "last")
    fit_in_process("--config", str(tiny_config(straight, prefix=str(straight / "batches"))))
    return {"after_kill": after_kill, "killed": killed, "straight": straight, "records_killed": records_killed,
            "records_resumed": read_records(killed / "batches.rank0.jsonl")[len(records_killed):],
            "records_straight": read_records(straight / "batches.rank0.jsonl")}


def test_a_kill_during_a_save_keeps_the_previous_last_checkpoint(runs) -> None:
    after = runs["after_kill"]
    assert after["last"]["global_step"] == KILL_STEP - 1  # the step-4 write never replaced it
    assert "epoch=0-step=4.ckpt" in after["files"] and "last.ckpt" in after["files"]
    assert len(after["stale"]) == 1 and after["stale"][0].name.startswith(".last.ckpt.")  # the half-written file
    # the resumed run removed it; nothing else is left over
    left = sorted(p.name for p in (runs["killed"] / "checkpoints").iterdir() if p.name.startswith("."))
    assert left == [], left


def test_the_resumed_run_ends_bit_for_bit_where_the_uninterrupted_run_ends(runs) -> None:
    resumed = load(runs["killed"] / "checkpoints" / "last.ckpt")
    straight = load(runs["straight"] / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == STEPS
    assert any(k.startswith("net_g_ema.") for k in straight["state_dict"])
    assert not torch.equal(straight["state_dict"]["net_g_ema.n_averaged"], torch.tensor(0))
    assert_same(resumed["state_dict"], straight["state_dict"], "state_dict")  # generator and EMA
    assert_same(resumed["optimizer_states"], straight["optimizer_states"], "optimizer_states")
    assert_same(resumed["VSRDataModule"], straight["VSRDataModule"], "datamodule")
    assert_same(resumed["vsrzoo"]["rng"], straight["vsrzoo"]["rng"], "rng")
    assert resumed["epoch"] == straight["epoch"] == 1


def test_the_resumed_run_trains_on_the_same_batches_with_the_same_random_states(runs) -> None:
    killed, resumed, straight = runs["records_killed"], runs["records_resumed"], runs["records_straight"]
    train = [r for r in straight if "step" in r]
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))
    assert [r["step"] for r in killed if "step" in r] == list(range(1, KILL_STEP + 1))
    resumed_train = [r for r in resumed if "step" in r]
    assert [r["step"] for r in resumed_train] == list(range(KILL_STEP, STEPS + 1))  # step 4 again, from step 3
    assert [r for r in killed if "step" in r][:KILL_STEP - 1] + resumed_train == train
    assert len({r["lq"] for r in train}) == STEPS  # every step a new random window and degradation
    # validation at steps 4 and 6 (after the resume) logs the same numbers
    assert [r for r in resumed if "val_at" in r] == [r for r in straight if "val_at" in r and r["val_at"] > 3]


def test_atomic_save_keeps_the_old_file_on_failure_and_removes_stale_writes(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = tmp_path / f".last.ckpt.{os.uname().nodename.replace('.', '_')}.{dead.pid}.tmp"
    stale.write_bytes(b"half")
    alive = tmp_path / f".last.ckpt.{os.uname().nodename.replace('.', '_')}.{os.getppid()}.tmp"
    alive.write_bytes(b"someone else's save in progress")

    def fail(self, checkpoint, file) -> None:  # noqa: ANN001
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(AtomicCheckpointIO, "_write", fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert not stale.exists() and alive.exists()  # a dead writer's file is removed, a running one's kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name])
    monkeypatch.undo()
    io.save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert isinstance(ProbeCheckpointIO(), AtomicCheckpointIO)


def test_train_stream_is_a_function_of_seed_and_position() -> None:
    """The datamodule's loader resumed at (epoch, batch) yields what the uninterrupted loader yields there."""
    def datamodule() -> VSRDataModule:
        dm = VSRDataModule(train_paths=[SAMPLE], num_frames=2, mirror=False, gt_size=32, batch_size=2,
                           samples_per_epoch=6, train_degradation="bicubic")
        dm.load_state_dict({"train_seed": 7, "epoch": 0, "batches": 0})
        return dm

    full = [b["gt"] for _ in range(2) for b in [*datamodule().train_dataloader()]]
    epochs = []
    loader = datamodule().train_dataloader()
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        epochs.extend(b["gt"] for b in loader)
    assert len(epochs) == 6 and not torch.equal(epochs[0], epochs[3])  # epoch 1 draws new windows
    resumed = datamodule()
    resumed.load_state_dict({"train_seed": 7, "epoch": 1, "batches": 1})
    tail = [b["gt"] for b in resumed.train_dataloader()]
    assert len(tail) == 2 and all(torch.equal(a, b) for a, b in zip(tail, epochs[4:]))
    assert len(resumed.train_dataloader()) == 3  # Lightning counts the whole epoch
    assert len(full) == 6 and torch.equal(full[0], full[3])  # a new loader without set_epoch repeats epoch 0

    ranks = [list(TrainSampler(range(8), num_samples=3, num_replicas=2, rank=r, epoch=1)) for r in (0, 1)]
    assert ranks == [[6, 8, 10], [7, 9, 11]]
    assert list(TrainSampler(range(8), num_samples=3, num_replicas=2, rank=1, epoch=1, start=2)) == [11]
