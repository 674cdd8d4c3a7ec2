"""`lightning predict` over a library of videos with DDP: every video done once, completely, by one rank.

One real 2-process DDP run (gloo, CPU) of the zoo's LightningCLI on three tiny videos (an odd count: the case where
a padding ``DistributedSampler`` would repeat one), shared by the tests of this module; plus the sampler's
partition without processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from zoo.data.datamodule import VSRDataModule
from zoo.data.samplers import UnpaddedDistributedSampler
from zoo.data.video_io import VideoWriter, open_video
from zoo.testing import sample_clip_dir

ROOT = Path(__file__).resolve().parents[1]
FRAMES = {"clip_a": 3, "clip_b": 4, "clip_c": 5}  # different lengths: a cut or mixed-up output shows

#: a callback added to the run that records, per rank, every clip key the prediction writer receives
PROBE = textwrap.dedent('''
    import json, os
    from lightning.pytorch.callbacks import Callback

    class Recorder(Callback):
        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            line = json.dumps({"rank": trainer.global_rank, "keys": list(batch["key"]),
                               "frames": int(outputs["sr"].shape[1])})
            fd = os.open(os.environ["PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, (line + "\\n").encode())
            finally:
                os.close(fd)
''')


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Three 32x32 videos of real frames, predicted by `python -m zoo predict` with 2 DDP processes."""
    root = tmp_path_factory.mktemp("predict_ddp")
    library = root / "library"
    library.mkdir()
    frames = [np.ascontiguousarray(f[100:132, 200:232]) for f in open_video(sample_clip_dir()).iter_frames(stop=5)]
    for name, count in FRAMES.items():
        with VideoWriter(library / f"{name}.mp4", fps=25) as writer:
            for frame in frames[:count]:
                writer.write(frame)
    (root / "probe.py").write_text(PROBE)
    log = root / "probe.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROBE_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(root), os.environ.get("PYTHONPATH", "")])}
    tiny = "--model.init_args.net.init_args."
    command = [sys.executable, "-m", "zoo", "predict", "--config", str(ROOT / "zoo/realbasicvsr.yaml"),
               f"{tiny}mid_channels=8", f"{tiny}num_propagation_blocks=1", f"{tiny}num_cleaning_blocks=1",
               "--model.init_args.ema_decay=null", f"--data.predict_paths=[{library}]",
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.callbacks+=probe.Recorder"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return {"out": root / "outputs" / "predict", "records": records, "stderr": done.stderr}


def test_each_video_is_predicted_once_by_one_rank(ddp_run) -> None:
    records = ddp_run["records"]
    keys = [key for record in records for key in record["keys"]]
    assert sorted(keys) == sorted(FRAMES), records  # every clip, none twice (no padding repeat)
    assert {record["rank"] for record in records} == {0, 1}, records  # the library is split across both ranks
    assert all(record["frames"] == FRAMES[record["keys"][0]] for record in records), records


def test_each_video_has_one_complete_output_and_no_temp_file(ddp_run) -> None:
    out = ddp_run["out"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.mp4" for name in FRAMES)  # no .partial left
    for name, count in FRAMES.items():
        video = open_video(out / f"{name}.mp4")
        assert (video.num_frames, video.width, video.height) == (count, 128, 128), name


class _FakeTrainer:
    def __init__(self, world_size: int, global_rank: int) -> None:
        self.world_size, self.global_rank = world_size, global_rank


@pytest.mark.parametrize(("clips", "world_size"), [(3, 2), (1, 2), (5, 3)])
def test_predict_loader_partitions_the_clips_without_repeats(tmp_path, clips, world_size) -> None:
    """Each rank's predict loader gets clips ``rank::world_size``; together exactly the library, a rank may get none
    (fewer clips than processes: Lightning's own unrepeated sampler asserts instead)."""
    source = sorted(sample_clip_dir().iterdir())[:1]
    for index in range(clips):
        clip = tmp_path / f"clip_{index}"
        clip.mkdir()
        (clip / source[0].name).symlink_to(source[0])
    seen = []
    for rank in range(world_size):
        datamodule = VSRDataModule(predict_paths=[str(tmp_path)])
        datamodule.trainer = _FakeTrainer(world_size, rank)
        loader = datamodule.predict_dataloader()
        assert isinstance(loader.sampler, UnpaddedDistributedSampler)
        assert list(loader.sampler) == list(range(clips))[rank::world_size] and len(loader) == len(loader.sampler)
        # an empty share is allowed (Lightning otherwise raises "DataLoader within local rank has zero length")
        assert datamodule.allow_zero_length_dataloader_with_multiple_devices == (len(loader) == 0)
        seen += list(loader.sampler)
    assert sorted(seen) == list(range(clips))


def test_writer_writes_a_repeated_clip_once_and_refuses_colliding_names(tmp_path) -> None:
    import torch

    from zoo.errors import InputError
    from zoo.systems.writer import VideoPredictionWriter

    writer = VideoPredictionWriter(output_dir=str(tmp_path), as_frames=True)
    sr = torch.rand(1, 2, 3, 8, 8)
    writer.write_on_batch_end(None, None, {"sr": sr, "key": ["a/b"]}, None, None, 0, 0)
    first = sorted((tmp_path / "a_b").iterdir())
    with pytest.warns(UserWarning, match="given twice"):
        writer.write_on_batch_end(None, None, {"sr": torch.zeros_like(sr), "key": ["a/b"]}, None, None, 1, 0)
    assert sorted((tmp_path / "a_b").iterdir()) == first and open_video(tmp_path / "a_b").read().mean() > 0
    with pytest.raises(InputError, match="would both be written"):
        writer.write_on_batch_end(None, None, {"sr": sr, "key": ["a_b"]}, None, None, 2, 0)
