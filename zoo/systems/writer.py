"""Writing ``lightning predict`` outputs as videos or frame folders (the same writer as ``vsrzoo upscale``)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.data.video_io import VideoWriter
from zoo.errors import InputError


class VideoPredictionWriter(BasePredictionWriter):
    """Write each predicted clip ``{'sr': (b, t, 3, H, W) in [0, 1], 'key': [...]}`` to ``output_dir/<key>``.

    Args:
        output_dir: folder that receives one ``<key>.mp4`` (H.264) or one ``<key>/`` PNG folder per clip.
        as_frames: write PNG frames instead of mp4.
        fps: frame rate of the written mp4 (LQ-only frame folders carry none; video inputs are better served by
            ``vsrzoo upscale``, which keeps the source fps and audio).
        keep_predictions: also let ``trainer.predict`` keep every prediction in memory and return them. Off by
            default: the clips are on disk, and over a library of videos the kept SR clips (float32, 16 times the LQ
            pixels at x4) would grow the memory of each process with every clip (``lightning predict`` with DDP
            keeps them by default); ``trainer.predict`` then returns None.

    Outputs are written atomically by :class:`zoo.data.video_io.VideoWriter` (a hidden temporary name in
    ``output_dir``, renamed when complete), so a failed or killed clip leaves no partial output under its name.
    Each clip is written once per run: a key seen again by this process (a sampler that repeats items) is skipped
    with a warning. Across processes, :meth:`zoo.data.datamodule.VSRDataModule.predict_dataloader` gives every
    clip to one rank only.

    Raises:
        InputError: two different clip keys map to the same output name (``a/b`` and ``a_b``).
    """

    def __init__(self, *, output_dir: str = "outputs/predict", as_frames: bool = False, fps: float = 25.0,
                 keep_predictions: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.as_frames = as_frames
        self.fps = fps
        self.keep_predictions = keep_predictions
        self._written: dict[Path, str] = {}

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written = {}
        if not self.keep_predictions:
            trainer.predict_loop.return_predictions = False

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for sr, key in zip(prediction["sr"], prediction["key"]):
            name = str(key).replace("/", "_")
            target = self.output_dir / (name if self.as_frames else f"{name}.mp4")
            if target in self._written:
                if self._written[target] != str(key):
                    raise InputError(f"clips {self._written[target]!r} and {str(key)!r} would both be written to "
                                     f"{target}; rename one")
                warnings.warn(f"clip {str(key)!r} was given twice to the prediction writer; written once ({target})",
                              stacklevel=2)
                continue
            self._written[target] = str(key)
            with VideoWriter(target, fps=self.fps, as_frames=self.as_frames) as writer:
                for frame in sr:
                    writer.write(frame)
