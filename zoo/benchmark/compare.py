"""``vsrzoo compare``: several upscalers on the same frames of one video, as one labelled video and one table.

:func:`compare` reads the first frames of a video file or frame folder (optionally a region of them, ``crop``),
upscales them with every model of the list, and writes:

- a side-by-side (``layout='row'``) or grid (``'grid'``) H.264 mp4: one panel per model, labelled, each panel
  optionally enlarged ``zoom`` times with nearest-neighbour pixels (so that the models' own pixels stay visible),
  at the source's exact frame rate and with its audio (cut to the compared frames; dropped when ``start > 0``);
- a PNG of the middle frame of that video (``<output>.png``), the picture to put in a report;
- a table (``<output>.csv`` and ``<output>.md``, also printed): per model the seconds per frame and the peak memory
  of its upscaling call (measured as the leaderboards measure them, :class:`zoo.benchmark.runner.PeakMemory`), and
  the metrics of the leaderboards (:class:`zoo.metrics.VideoMetrics`, same conventions): on LQ-only input NIQE and
  E*warp with flow from the output itself (``ewarp_sr_*``); with ``gt`` PSNR-Y / SSIM-Y / LPIPS and E*warp with flow
  from the GT (``ewarp_gt_*``), 4 px border cropped.

Models are given as text (:func:`parse_model`): ``bicubic`` (MATLAB ``imresize`` x4, the leaderboards' baseline),
``FAMILY:WEIGHTS`` (a path or a name the family resolves, e.g. ``realesrgan:x4plus``), ``FAMILY:random[:VARIANT]``
(random networks: wiring checks only, labelled so), each optionally prefixed ``LABEL=``. They run through the same
:func:`zoo.benchmark.entries.build_upscaler` as the leaderboard entries, with each family's chunking defaults.

Every output is written under a temporary name and renamed when complete; the input is never overwritten.
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from zoo.benchmark.report import device_name, format_number
from zoo.benchmark.suite import BICUBIC, RANDOM_WEIGHTS, Entry
from zoo.errors import ConfigError, InputError
from zoo.fileio import write_atomic

__all__ = ["CompareResult", "ModelChoice", "compare", "parse_crop", "parse_model"]

#: Pixels of the label banner on top of each panel, and of the gap between panels.
BANNER, GAP = 22, 4
#: Border cropped on each side before PSNR / SSIM / E*warp / NIQE (the leaderboards' ``crop_border``: the scale).
CROP_BORDER = 4


@dataclass(frozen=True)
class ModelChoice:
    """One model of a comparison, parsed from ``--model`` text by :func:`parse_model`.

    Attributes:
        text: the text it was parsed from.
        label: the panel and table label.
        family: ``'bicubic'`` or a family of :func:`zoo.hub.available_families`.
        weights: a path, a name the family resolves, ``'random'``, or None (bicubic).
        variant: random networks only: the family's named size.
    """

    text: str
    label: str
    family: str
    weights: str | None = None
    variant: str | None = None

    def entry(self, index: int) -> Entry:
        """The leaderboard :class:`~zoo.benchmark.suite.Entry` of this model, with the family's chunking defaults
        (``vsrzoo upscale``'s): temporal chunks, and frame tiles unless the family tiles itself."""
        if self.family == BICUBIC:
            return Entry(name=f"m{index}", label=self.label)
        from zoo.hub import family

        spec = family(self.family)
        chunking = spec.chunking
        options: dict[str, Any] = {}
        tile, tile_overlap = chunking.tile, chunking.tile_overlap
        if chunking.tiles_in_sampler:
            options = {"tile": tile, "tile_overlap": tile_overlap}
            if spec.kind == "diffusion":
                options["progress"] = False
            tile, tile_overlap = None, 0
        return Entry(name=f"m{index}", family=self.family, weights=self.weights, variant=self.variant,
                     options=options, label=self.label, chunk_frames=chunking.chunk_frames,
                     overlap=chunking.overlap if chunking.chunk_frames else 0, tile=tile,
                     tile_overlap=tile_overlap if tile else 0)


def parse_model(text: str) -> ModelChoice:
    """Parse one ``--model``: ``[LABEL=]bicubic``, ``[LABEL=]FAMILY:WEIGHTS`` or ``[LABEL=]FAMILY:random[:VARIANT]``.

    Raises:
        ConfigError: empty parts, an unknown family or variant, weights missing after ``FAMILY:`` (one line naming
            the text and the accepted forms).
    """
    from zoo.hub import available_families, family

    label, sep, body = text.partition("=")
    if not sep:
        label, body = "", text
    body = body.strip()
    forms = "bicubic, FAMILY:WEIGHTS (a path or a name the family ships) or FAMILY:random[:VARIANT]"
    if body == BICUBIC:
        return ModelChoice(text=text, label=label.strip() or "bicubic", family=BICUBIC)
    name, sep, weights = body.partition(":")
    if not sep or not name or not weights:
        raise ConfigError(f"--model {text!r}: expected {forms}; families: {', '.join(available_families())}")
    spec = family(name)  # unknown family: one line listing them
    variant = None
    if weights == RANDOM_WEIGHTS or weights.startswith(RANDOM_WEIGHTS + ":"):
        variant = weights.partition(":")[2] or None
        if variant is not None:
            spec.variant(variant)  # unknown variant: one line listing them
        weights = RANDOM_WEIGHTS
        default = f"{name} (random{', ' + variant if variant else ''}: meaningless)"
    else:
        if weights not in spec.weight_names and not Path(weights).expanduser().exists():
            from zoo.errors import WeightsError

            raise WeightsError(f"--model {text!r}: {name} weights not found: {weights} (accepted: "
                               f"{spec.accepted_weights()})")
        default = f"{name} {Path(weights).name}"
    return ModelChoice(text=text, label=label.strip() or default, family=name, weights=weights, variant=variant)


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``'X,Y,W,H'`` (LQ pixels: left, top, width, height) -> a tuple of ints.

    Raises:
        ConfigError: not four integers, or a non-positive size.
    """
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--crop expects X,Y,W,H in LQ pixels (e.g. 200,100,96,96), got {text!r}") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ConfigError(f"--crop {text!r}: X, Y must be >= 0 and W, H >= 1")
    return x, y, w, h


@dataclass
class CompareResult:
    """What :func:`compare` wrote and measured.

    Attributes:
        rows: one dict per model: ``label``, ``model``, ``s_per_frame``, ``peak_mem_mib``, ``params_m`` and the
            metric keys of :class:`zoo.metrics.VideoMetrics` (``niqe``, ``ewarp_sr_dis``, ``psnr``, ...).
        video, picture, csv_path, md_path: the files written.
        frames: number of compared frames; ``lq_size``: ``(w, h)`` of the compared LQ frames.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    video: Path | None = None
    picture: Path | None = None
    csv_path: Path | None = None
    md_path: Path | None = None
    frames: int = 0
    lq_size: tuple[int, int] = (0, 0)


def _label_font(size: int):  # noqa: ANN202 - PIL font
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def _panel(frame: np.ndarray, label: str, zoom: int) -> np.ndarray:
    """A labelled panel: ``frame`` (h, w, 3) uint8 enlarged ``zoom`` x (nearest), under a banner with ``label``."""
    from PIL import Image, ImageDraw

    if zoom > 1:
        frame = frame.repeat(zoom, axis=0).repeat(zoom, axis=1)
    h, w, _ = frame.shape
    canvas = Image.new("RGB", (w, h + BANNER), (24, 24, 24))
    canvas.paste(Image.fromarray(frame), (0, BANNER))
    ImageDraw.Draw(canvas).text((6, 3), label, fill=(255, 255, 255), font=_label_font(15))
    return np.asarray(canvas)


def _arrange(panels: Sequence[np.ndarray], layout: str) -> np.ndarray:
    """Panels of one size side by side (``'row'``) or in a near-square grid (``'grid'``), ``GAP`` px apart."""
    n = len(panels)
    cols = n if layout == "row" else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    ph, pw, _ = panels[0].shape
    sheet = np.full((rows * ph + (rows - 1) * GAP, cols * pw + (cols - 1) * GAP, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        sheet[r * (ph + GAP):r * (ph + GAP) + ph, c * (pw + GAP):c * (pw + GAP) + pw] = panel
    return sheet


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """``(1, t, 3, h, w)`` float [0, 1] -> ``(t, h, w, 3)`` uint8 (rounded)."""
    return rearrange((video[0].clamp(0, 1) * 255).round().to(torch.uint8), "t c h w -> t h w c").numpy()


def _read_clip(path: str | Path, start: int, max_frames: int | None, crop: tuple[int, int, int, int] | None,
               scale: int = 1, what: str = "input") -> tuple[torch.Tensor, Any]:
    """Frames ``[start, start + max_frames)`` of a clip (cropped to ``crop`` scaled by ``scale``) and the source."""
    from zoo.data.video_io import open_video

    if not Path(path).exists():
        raise InputError(f"{what} not found: {path}")
    source = open_video(path)
    stop = None if max_frames is None else start + max_frames
    if start >= source.num_frames:
        raise InputError(f"{what} {path} has {source.num_frames} frames; --start {start} is past its end")
    clip = source.read(start=start, stop=None if stop is None else min(stop, source.num_frames))
    if crop is not None:
        x, y, w, h = (v * scale for v in crop)
        if y + h > clip.shape[-2] or x + w > clip.shape[-1]:
            raise InputError(f"--crop {','.join(str(v) for v in crop)} lies outside the {what}'s "
                             f"{clip.shape[-1] // scale}x{clip.shape[-2] // scale} LQ frames")
        clip = clip[..., y:y + h, x:x + w]
    return clip[None], source


def _table(rows: Sequence[dict[str, Any]], has_gt: bool) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison table (columns with no value in any row are left out)."""
    metric_cols = ([("psnr", "PSNR-Y ↑", 2), ("ssim", "SSIM-Y ↑", 4), ("lpips", "LPIPS ↓", 4)] if has_gt else
                   [("niqe", "NIQE ↓", 3)])
    ewarp = sorted({k for row in rows for k in row if k.startswith("ewarp_")})
    metric_cols += [(k, f"E*warp {k[6:].replace('_', '-').upper()} (×1e-3) ↓", 3) for k in ewarp]
    cols = [("label", "model", None), ("weights", "weights", None), ("s_per_frame", "s/frame", 3),
            ("peak_mem_mib", "peak mem (MiB)", 1), ("params_m", "params (M)", 2), *metric_cols]
    cols = [c for c in cols if any(row.get(c[0]) not in (None, "") for row in rows)]
    cells = [[str(row.get(key, "")) if decimals is None else format_number(row.get(key), decimals)
              for key, _, decimals in cols] for row in rows]
    return [c[1] for c in cols], cells


def compare(
    input_path: str | Path,
    output_path: str | Path,
    models: Sequence[str | ModelChoice],
    *,
    gt: str | Path | None = None,
    start: int = 0,
    max_frames: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
    zoom: int = 1,
    layout: str = "row",
    device: str = "cpu",
    scale: int = 4,
    progress: bool = True,
) -> CompareResult:
    """Upscale the same frames with several models; write the labelled comparison video, its picture and the table.

    Args:
        input_path: video file (mp4, mov, mkv, webm, avi) or folder of frames: the LQ.
        output_path: the ``.mp4`` to write; ``.png``, ``.csv`` and ``.md`` of the same stem go next to it.
        models: :func:`parse_model` texts (or parsed choices), in panel order; at least one.
        gt: optional ground truth (video or frame folder) of ``scale`` x the input's size, frame-aligned with it:
            adds PSNR-Y / SSIM-Y / LPIPS / E*warp with flow from the GT, and a GT panel.
        start, max_frames: compare frames ``[start, start + max_frames)`` (None: to the end). Every model's output
            of these frames is held in memory (uint8), so keep comparisons to short clips.
        crop: ``(x, y, w, h)`` LQ pixels: compare on this region only (each model upscales the region; faster).
        zoom: integer nearest-neighbour enlargement of every panel (>= 1).
        layout: ``'row'`` (side by side) or ``'grid'``.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.
        scale: upscaling factor every model must have.
        progress: print one line per model.

    Returns:
        :class:`CompareResult`.

    Raises:
        ConfigError: bad model texts, ``zoom``, ``layout``, a model of another scale, CUDA missing.
        WeightsError: missing or unusable weights (named).
        InputError: missing or unreadable input / GT, a crop outside the frames, GT of the wrong size or too few
            frames, an output path that is the input or a folder. A missing output folder is created.
    """
    from zoo.benchmark.entries import build_upscaler
    from zoo.benchmark.runner import PeakMemory, lpips_metric_and_note, make_metrics
    from zoo.benchmark.suite import MetricOptions
    from zoo.data.video_io import VideoWriter

    choices = [m if isinstance(m, ModelChoice) else parse_model(m) for m in models]
    if not choices:
        raise ConfigError("give at least one --model")
    if isinstance(zoom, bool) or not isinstance(zoom, int) or zoom < 1:
        raise ConfigError(f"--zoom must be an integer >= 1, got {zoom!r}")
    if layout not in ("row", "grid"):
        raise ConfigError(f"--layout must be 'row' or 'grid', got {layout!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    output = Path(output_path).expanduser()
    if output.is_dir():
        raise InputError(f"output path {output} is a folder; give a file name such as compare.mp4")
    for protected in (input_path, gt):
        if protected is not None and Path(protected).expanduser().resolve() == output.resolve():
            raise InputError(f"output path {output} would overwrite the input {protected}; choose another path")

    lq, source = _read_clip(input_path, start, max_frames, crop)
    t, lq_h, lq_w = lq.shape[1], lq.shape[-2], lq.shape[-1]
    gt_clip = None
    if gt is not None:
        gt_clip, _ = _read_clip(gt, start, t, crop, scale=scale, what="GT")
        if gt_clip.shape[1] < t or gt_clip.shape[-2:] != (lq_h * scale, lq_w * scale):
            raise InputError(f"GT {gt} must hold {t} frames of {lq_w * scale}x{lq_h * scale} (x{scale} the input), "
                             f"got {gt_clip.shape[1]} of {gt_clip.shape[-1]}x{gt_clip.shape[-2]}")
    has_gt = gt_clip is not None
    output.parent.mkdir(parents=True, exist_ok=True)  # as vsrzoo upscale does; only once the inputs are read
    # E*warp needs two frames: a one-frame comparison has none
    options = MetricOptions(crop_border=CROP_BORDER, lpips=True, warping_error=t >= 2, tof=False, tlpips=False,
                            niqe=True, ewarp_flow_from="gt")
    lpips_metric = lpips_metric_and_note(options)[0] if has_gt else None
    if lpips_metric is not None:
        lpips_metric = lpips_metric.to(device)

    result = CompareResult(frames=t, lq_size=(lq_w, lq_h))
    outputs: list[np.ndarray] = []
    for index, choice in enumerate(choices):
        upscaler = build_upscaler(choice.entry(index), scale=scale, device=device)
        upscaler(lq[:, :1])  # untimed warm-up, as in the leaderboards
        with PeakMemory(device) as memory:
            started = time.perf_counter()
            sr = upscaler(lq)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
        metrics = make_metrics(options, has_gt, lpips_metric)
        scores = metrics.update(sr, gt_clip[:, :t] if has_gt else None, key=choice.label)[0]
        scores.pop("key")
        row = {"label": choice.label, "model": choice.text, "weights": choice.entry(index).describe_weights(),
               "s_per_frame": seconds / t, "peak_mem_mib": memory.peak_mib, "params_m": upscaler.num_params / 1e6,
               **scores}
        result.rows.append(row)
        outputs.append(_to_uint8(sr))
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
            print(f"{choice.label}: {seconds / t:.3g} s/frame, peak +{memory.peak_mib:.0f} MiB, {shown}", flush=True)
        del upscaler, sr
        gc.collect()

    labels = [c.label for c in choices]
    if has_gt:
        outputs.append(_to_uint8(gt_clip[:, :t]))
        labels.append("GT")
    # the source's audio from its start: kept when the comparison starts at frame 0 (cut to its length), else
    # dropped, since it would not line up with the frames
    audio_from = source.path if source.has_audio and start == 0 else None
    with VideoWriter(output, fps=source.fps_fraction, audio_from=audio_from, input_path=input_path) as writer:
        for i in range(t):
            sheet = _arrange([_panel(out[i], label, zoom) for out, label in zip(outputs, labels)], layout)
            writer.write(torch.from_numpy(sheet).permute(2, 0, 1).float() / 255)
            if i == t // 2:
                still = sheet
    result.video = output

    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(still).save(buffer, format="PNG", optimize=True)
    result.picture = output.with_suffix(".png")
    write_atomic(result.picture, buffer.getvalue())

    import csv

    header, cells = _table(result.rows, has_gt)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *cells])
    result.csv_path = output.with_suffix(".csv")
    write_atomic(result.csv_path, text.getvalue().encode())
    where = f"{Path(input_path).name}, frames {start}-{start + t - 1}, LQ {lq_w}x{lq_h}" + (
        f" at ({crop[0]}, {crop[1]})" if crop is not None else "") + f", x{scale}"
    md = [f"# vsrzoo compare: {where}", "",
          f"Device: {device_name(torch.device(device))}. s/frame and peak memory (increase of the process's "
          "resident memory, or of allocated CUDA memory, during the upscaling call; weights excluded) as in the "
          "leaderboards, after one untimed warm-up frame. "
          + ("PSNR-Y / SSIM-Y / LPIPS against the GT, E*warp with flow and occlusion from the GT"
             if has_gt else "No GT: NIQE (lower is better) and E*warp with flow and occlusion from each output "
             "itself") + f"; {CROP_BORDER} px border cropped.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
          *["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]]
    result.md_path = output.with_suffix(".md")
    write_atomic(result.md_path, ("\n".join(md) + "\n").encode())
    return result
