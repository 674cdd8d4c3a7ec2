"""Run a benchmark suite: every entry on every evaluation set, metrics, speed and memory, then the leaderboard.

For each entry (the bicubic baseline first) and each set, every clip's LQ goes through the entry's
:class:`~zoo.benchmark.entries.Upscaler`; the output (clamped to [0, 1]) is scored with
:class:`zoo.metrics.VideoMetrics` against the GT (synthetic sets) or without reference (LQ-only sets).

- **Frames per second** = frames / wall time of the upscaler calls (network, chunking, tiling, device transfers;
  loading and metrics excluded), after one untimed warm-up call per entry on the first two frames of the first clip.
- **Peak memory** = on CPU, the largest increase of the process's resident set size during an upscaler call over
  the RSS just before it (Linux: the kernel's high-water mark ``VmHWM``, reset through ``/proc/self/clear_refs``;
  elsewhere a 5 ms sampling thread); on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation before the
  call. It counts activations and outputs, not the weights (loaded before) nor the input clip.
- An entry whose weights file is missing, or a set whose data is missing, is reported as skipped with the reason;
  the suite still runs the rest.
"""
from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.benchmark.entries import Upscaler, build_upscaler
from zoo.benchmark.report import MEAN, device_name, environment, timestamp, write_report
from zoo.benchmark.sets import Clip, load_clips
from zoo.benchmark.suite import Entry, EvalSet, MetricOptions, Suite, load_suite
from zoo.catalogue import ALEXNET
from zoo.errors import ConfigError, WeightsError

__all__ = ["PeakMemory", "SuiteResult", "lpips_metric_and_note", "make_metrics", "run_suite"]

_MIB = 1024 * 1024


def _read_status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _release_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so that memory freed by an earlier call
    counts again when the next call allocates it (otherwise the allocator reuses resident pages and the RSS does not
    rise). No-op where glibc is absent."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


class PeakMemory:
    """Context manager measuring the peak memory increase of the code it wraps, in MiB (``.peak_mib``).

    CPU: resident set size, after returning the heap's free pages to the OS (glibc ``malloc_trim``, so memory an
    earlier call freed is counted again). On Linux the high-water mark is reset by writing ``5`` to
    ``/proc/self/clear_refs`` (kernel >= 4.0) and read from ``VmHWM`` afterwards (exact); if that is not possible a
    thread samples ``VmRSS`` every 5 ms (``method`` says which). CUDA: ``torch.cuda.max_memory_allocated``.

    Args:
        device: where the measured code allocates (``'cpu'`` or a CUDA device).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.peak_mib = 0.0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled_peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            rss = _read_status_kib("VmRSS") or 0
            self._sampled_peak = max(self._sampled_peak, rss)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        _release_free_heap()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self._base = _read_status_kib("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "sampled VmRSS"
            self._sampled_peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / _MIB
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled_peak, _read_status_kib("VmRSS") or 0)
        else:
            peak = _read_status_kib("VmHWM") or 0
        self.peak_mib = max(peak - self._base, 0) * 1024 / _MIB


@dataclass
class SuiteResult:
    """What :func:`run_suite` returns.

    Attributes:
        suite: the suite that ran (after ``entries``/``sets`` selection).
        rows: raw rows (dicts; numbers as floats): one per entry x set x clip and one ``clip == 'mean'`` per
            entry x set (skipped entries/sets: one row with ``status == 'skipped'`` and the reason in ``note``).
        meta: ``date``, ``device``, ``versions``, ``command``, ``cache_dir``, ``notes``, ``metric_notes``, ``set_info``.
        csv_path, md_path: the files written (None with ``write=False``).
    """

    suite: Suite
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    csv_path: Path | None = None
    md_path: Path | None = None

    def mean_rows(self, set_name: str | None = None) -> list[dict[str, Any]]:
        """The ``clip == 'mean'`` rows (optionally of one set)."""
        return [r for r in self.rows if r["clip"] == MEAN and (set_name is None or r["set"] == set_name)]


def lpips_metric_and_note(options: MetricOptions) -> tuple[Any, str]:
    """(LPIPSMetric or None, note explaining an empty LPIPS/tLPIPS column): None when switched off or when the local
    AlexNet weights are absent (nothing is downloaded)."""
    if not (options.lpips or options.tlpips):
        return None, "LPIPS and tLPIPS are switched off in the suite's metrics."
    import warnings

    from zoo.metrics.lpips import ALEXNET_FILE, LPIPSMetric, alexnet_weights_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the reason goes into the leaderboard instead
        metric = LPIPSMetric()
    if metric.is_available:
        return metric, ("LPIPS (AlexNet, v0.1) and tLPIPS from the local AlexNet weights "
                        f"`{alexnet_weights_path()}`.")
    return None, (f"LPIPS and tLPIPS are empty (n/a): the AlexNet backbone weights `{ALEXNET_FILE}` are not at "
                  f"`{alexnet_weights_path()}` (`{ALEXNET.download_command}` fetches them; set TORCH_HOME to their "
                  "folder); nothing is downloaded at run time.")


_DISTS_NOTE = ("DISTS is empty: no maintained package computes it offline here (piq's and DISTS_pytorch's DISTS "
               "download VGG16 and DISTS weights at first use; none is installed or cached).")


def _metric_notes(suite: Suite, lpips_note: str) -> list[str]:
    m = suite.metrics
    space = "Y channel (BT.601, MATLAB coefficients)" if m.y_channel else "RGB"
    flow_from = ("the GT clip (the same motion for every entry; columns `ewarp_gt_*`); on LQ-only sets the SR clip "
                 "itself (`ewarp_sr_*`)" if m.ewarp_flow_from == "gt" else "the SR clip itself (`ewarp_sr_*`)")
    from zoo.metrics.temporal import resolve_flow

    flow = resolve_flow(m.flow)
    return [
        f"PSNR and SSIM: {space}, frames rounded to 8 bits, {m.crop_border} px border cropped on each side "
        f"(BasicSR `calculate_psnr`/`calculate_ssim` conventions), averaged over frames, then over clips.",
        lpips_note,
        _DISTS_NOTE,
        *([f"E*warp (Lai et al., ECCV 2018) x1e3 on 8-bit frames, flow ({m.flow}: {flow.upper()} here, DIS for "
           f"frames under 128 px) and occlusion mask from {flow_from}, {m.crop_border} px border cropped; the column "
           f"name says which flow made it, and only numbers of the same column compare."] if m.warping_error else []),
        *(["tOF (TecoGAN, Farneback flow, raw pixels) and tLPIPS (TecoGAN, raw) use all frames."]
          if m.tof or m.tlpips else []),
        *(["NIQE (BasicSR, lower is better) only on LQ-only sets."] if m.niqe else []),
        "FPS: frames / wall time of the upscaler calls (chunking, tiling, transfers included; loading and metrics "
        "excluded), after one untimed warm-up call per entry. Peak mem: largest increase of the process RSS (CPU) "
        "or of allocated CUDA memory during a call, above the level before it (weights and input excluded).",
        "The bicubic row (bold) is the reference: MATLAB `imresize` bicubic x4 (basicsr's exact port), the "
        "\"Bicubic\" row of the published tables; BI sets' LR frames are MATLAB `imresize` x1/4 too.",
    ]


def _set_info(eval_set: EvalSet, clips: list[Clip] | None) -> dict[str, Any]:
    if not clips:
        return {"missing": eval_set.missing}
    def in_clip_order(values: list[str]) -> list[str]:  # distinct values, in the order of the clips
        return list(dict.fromkeys(values))

    frames = in_clip_order([str(c.num_frames) for c in clips])
    lq_sizes = in_clip_order([f"{c.lq.shape[-1]}x{c.lq.shape[-2]}" for c in clips])
    info = {"clips": [c.key for c in clips], "frames": "/".join(frames), "lq_size": ", ".join(lq_sizes)}
    if eval_set.has_gt:
        info["gt_size"] = ", ".join(in_clip_order([f"{c.gt.shape[-1]}x{c.gt.shape[-2]}" for c in clips]))
    return info


def weights_made_by(entry: Entry) -> str:
    """How an entry's weights were made: the training command and commit a zoo checkpoint records
    (``checkpoint['vsrzoo']['made_by']``, :mod:`zoo.provenance`), else the suite's ``weights_from``, else ''."""
    from zoo.weights import checkpoint_info

    if entry.is_bicubic or entry.is_random:
        return "not trained" if entry.is_random else ""
    path = Path(str(entry.weights))
    if path.is_file() and path.suffix == ".ckpt":
        try:
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader itself
            ckpt = None
        made_by = checkpoint_info(ckpt).get("made_by") if ckpt is not None else None
        if isinstance(made_by, dict) and made_by.get("command"):
            return f"`{made_by['command']}` at commit {made_by.get('commit') or 'unknown'}"
    return entry.weights_from


def _base_row(eval_set: EvalSet, entry: Entry) -> dict[str, Any]:
    return {"set": eval_set.name, "protocol": eval_set.protocol, "entry": entry.name, "label": entry.label,
            "weights": entry.describe_weights()}


def make_metrics(options: MetricOptions, has_gt: bool, lpips_metric: Any):  # noqa: ANN202
    """The :class:`zoo.metrics.VideoMetrics` of a set: full-reference metrics with GT, NIQE without (the suite's
    ``options``; LPIPS only with an available ``lpips_metric``)."""
    from zoo.metrics import VideoMetrics

    lpips_on = lpips_metric is not None
    return VideoMetrics(psnr=has_gt, ssim=has_gt, lpips=has_gt and options.lpips and lpips_on,
                        warping_error=options.warping_error, tof=has_gt and options.tof,
                        tlpips=has_gt and options.tlpips and lpips_on, niqe=(not has_gt) and options.niqe,
                        crop_border=options.crop_border, y_channel=options.y_channel, flow=options.flow,
                        ewarp_flow_from=options.ewarp_flow_from, lpips_metric=lpips_metric)


def _warm_up(upscaler: Upscaler, clips: dict[str, list[Clip] | None]) -> None:
    for set_clips in clips.values():
        if set_clips:
            upscaler(set_clips[0].lq[:, :2])
            return


def _default_command(suite: Suite, device: str, entries: Sequence[str] | None, sets: Sequence[str] | None,
                     output_dir: str | Path | None) -> str:
    args = [repr(str(suite.path) if suite.path is not None else suite.name)]
    if output_dir is not None:
        args.append(f"output_dir={str(output_dir)!r}")
    args.append(f"device={device!r}")
    if entries:
        args.append(f"entries={list(entries)!r}")
    if sets:
        args.append(f"sets={list(sets)!r}")
    return f"python: zoo.benchmark.run_suite({', '.join(args)})"


def run_suite(
    suite: str | Path | Suite,
    *,
    output_dir: str | Path | None = "benchmarks/results",
    device: str = "cpu",
    entries: Sequence[str] | None = None,
    sets: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    command: str | None = None,
    progress: bool = True,
) -> SuiteResult:
    """Run a benchmark suite and write its leaderboard.

    Args:
        suite: a suite YAML path or a :class:`Suite`.
        output_dir: folder for ``<suite.name>.csv`` and ``.md``; None writes nothing.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'`` (CUDA when available).
        entries: run only these entries (the bicubic baseline always runs).
        sets: run only these sets.
        cache_dir: LQ cache folder (default: the suite's ``cache_dir``).
        command: the exact command to record in the markdown (the CLI passes its command line); default: this
            Python call.
        progress: print one line per entry x set.

    Returns:
        :class:`SuiteResult`.

    Raises:
        ConfigError: invalid suite, unknown entry/set names, bad entry options, CUDA missing.
        InputError: unreadable clips of a set whose paths exist.
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    if entries is not None or sets is not None:
        suite = suite.select(entries=entries, sets=sets)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    cache_dir = Path(cache_dir if cache_dir is not None else suite.cache_dir)
    command = command or _default_command(suite, device, entries, sets, output_dir)

    lpips_metric, lpips_note = lpips_metric_and_note(suite.metrics)
    if lpips_metric is not None:
        lpips_metric = lpips_metric.to(torch_device)
    notes: list[str] = []
    clips: dict[str, list[Clip] | None] = {}
    for eval_set in suite.sets:
        if eval_set.missing:
            clips[eval_set.name] = None
            notes.append(f"Set `{eval_set.name}` skipped: {eval_set.missing}.")
            continue
        clips[eval_set.name] = load_clips(eval_set, suite, cache_dir=cache_dir, progress=progress)

    result = SuiteResult(suite=suite)
    for entry in suite.entries:
        try:
            upscaler = build_upscaler(entry, scale=suite.scale, device=torch_device)
        except WeightsError as exc:
            notes.append(f"Entry `{entry.name}` skipped: {exc}.")
            for eval_set in suite.sets:
                if clips[eval_set.name]:
                    result.rows.append({**_base_row(eval_set, entry), "clip": MEAN, "status": "skipped",
                                        "note": f"weights missing: {entry.weights}"})
            if progress:
                print(f"skipped {entry.name}: {exc}", flush=True)
            continue
        if entry.is_random:
            what = entry.net["class_path"] if entry.net is not None else f"family {entry.family}"
            notes.append(f"Entry `{entry.name}` runs RANDOMLY INITIALISED weights ({what}): its quality numbers mean "
                         f"nothing, only its speed and memory do.")
        _warm_up(upscaler, clips)
        params_m = upscaler.num_params / 1e6
        for eval_set in suite.sets:
            set_clips = clips[eval_set.name]
            if not set_clips:
                continue
            metrics = make_metrics(suite.metrics, eval_set.has_gt, lpips_metric)
            total_frames, total_seconds, peak = 0, 0.0, 0.0
            for clip in set_clips:
                with PeakMemory(torch_device) as memory:
                    started = time.perf_counter()
                    sr = upscaler(clip.lq)
                    if torch_device.type == "cuda":
                        torch.cuda.synchronize(torch_device)
                    seconds = time.perf_counter() - started
                scores = metrics.update(sr, clip.gt, key=clip.key)[0]
                del sr
                total_frames += clip.num_frames
                total_seconds += seconds
                peak = max(peak, memory.peak_mib)
                scores.pop("key")
                result.rows.append({**_base_row(eval_set, entry), "clip": clip.key,
                                    "frames": clip.num_frames, "lq_size": f"{clip.lq.shape[-1]}x{clip.lq.shape[-2]}",
                                    **scores, "params_m": params_m, "fps": clip.num_frames / seconds,
                                    "peak_mem_mib": memory.peak_mib, "status": "ok", "note": ""})
            mean = metrics.compute()
            result.rows.append({**_base_row(eval_set, entry), "clip": MEAN, "frames": total_frames,
                                "lq_size": _set_info(eval_set, set_clips)["lq_size"], **mean,
                                "params_m": params_m, "fps": total_frames / total_seconds,
                                "peak_mem_mib": peak, "status": "ok", "note": ""})
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in mean.items())
                print(f"{entry.name} on {eval_set.name}: {shown}, {total_frames / total_seconds:.3g} fps, "
                      f"peak +{peak:.0f} MiB", flush=True)
        del upscaler
        gc.collect()

    result.meta = {
        "date": timestamp(),
        "device": device_name(torch_device),
        "versions": environment(),
        "command": command,
        "cache_dir": str(cache_dir),
        "notes": notes,
        "metric_notes": _metric_notes(suite, lpips_note),
        "set_info": {s.name: _set_info(s, clips[s.name]) for s in suite.sets},
        "weights_made_by": {e.name: weights_made_by(e) for e in suite.entries},
    }
    if output_dir is not None:
        result.csv_path, result.md_path = write_report(suite=suite, rows=result.rows, meta=result.meta,
                                                       output_dir=output_dir)
    return result
