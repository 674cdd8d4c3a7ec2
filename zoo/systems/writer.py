"""Writing ``lightning predict`` outputs as videos or frame folders (the same writer as ``vsrzoo upscale``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.data.video_io import VideoWriter


class VideoPredictionWriter(BasePredictionWriter):
    """Write each predicted clip ``{'sr': (b, t, 3, H, W) in [0, 1], 'key': [...]}`` to ``output_dir/<key>``.

    Args:
        output_dir: folder that receives one ``<key>.mp4`` (H.264) or one ``<key>/`` PNG folder per clip.
        as_frames: write PNG frames instead of mp4.
        fps: frame rate of the written mp4 (LQ-only frame folders carry none; video inputs are better served by
            ``vsrzoo upscale``, which keeps the source fps and audio).

    Outputs are written atomically by :class:`zoo.data.video_io.VideoWriter`.
    """

    def __init__(self, *, output_dir: str = "outputs/predict", as_frames: bool = False, fps: float = 25.0) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.as_frames = as_frames
        self.fps = fps

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
            with VideoWriter(target, fps=self.fps, as_frames=self.as_frames) as writer:
                for frame in sr:
                    writer.write(frame)
