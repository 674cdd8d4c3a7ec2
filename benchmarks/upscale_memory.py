"""Peak memory of streaming inference (zoo.inference.upscale_video) against video length.

For each requested length N the source clip is looped to N frames (optionally cropped: the crop is printed with
the results) into a temporary mp4, then ``upscale_video`` runs in a fresh Python process whose peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is reported, with the RSS reached just before the run
(imports and network built) for reference. With streaming, peak RSS should not grow with N.

Networks: ``realbasicvsr`` is the full-size RealBasicVSRNet (64 channels, 20 + 20 blocks) with random weights (no
file needed; speed and memory do not depend on the weights); ``bicubic`` is a weight-free x4 stand-in that
isolates the reading / blending / encoding path at full output size.

Examples::

    # the real net at 640x360 (hours on a CPU; use a GPU or --tile to bound memory)
    python benchmarks/upscale_memory.py --frames 30 300 --tile 128
    # the real net on a 64x64 crop, 10 vs 100 frames (about 10 minutes on 2 CPU cores)
    python benchmarks/upscale_memory.py --frames 10 100 --crop 64x64 --chunk-frames 10 --overlap 2
    # the I/O path at full size (640x360 -> 2560x1440), 30 vs 300 frames
    python benchmarks/upscale_memory.py --net bicubic --frames 30 300
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build_net(name: str, seed: int):
    import torch
    import torch.nn.functional as F
    from einops import rearrange
    from torch import nn

    torch.manual_seed(seed)
    if name == "realbasicvsr":
        from zoo.models.realbasicvsr.net import RealBasicVSRNet

        return RealBasicVSRNet()

    class Bicubic(nn.Module):
        def forward(self, lq: torch.Tensor) -> torch.Tensor:
            frames = rearrange(lq, "b t c h w -> (b t) c h w")
            out = F.interpolate(frames, scale_factor=4, mode="bicubic", align_corners=False)
            return rearrange(out, "(b t) c h w -> b t c h w", b=lq.shape[0])

    return Bicubic()


def run_child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    from zoo.inference import upscale_video

    if args.threads:
        torch.set_num_threads(args.threads)
    net = _build_net(args.net, args.seed)
    before = _peak_rss_mib()
    summary = upscale_video(net, args.input, args.output, scale=4, chunk_frames=args.chunk_frames,
                            overlap=args.overlap, tile=args.tile, tile_overlap=args.tile_overlap, device=args.device,
                            dtype=args.dtype, progress=False)
    print(json.dumps({"frames": summary["frames"], "size": summary["size"], "seconds": round(summary["seconds"], 1),
                      "rss_before_run_mib": round(before, 1), "peak_rss_mib": round(_peak_rss_mib(), 1)}))


def make_input(source: Path, frames: int, crop: tuple[int, int] | None, path: Path) -> tuple[int, int]:
    """Loop ``source`` to ``frames`` frames (top-left crop ``(h, w)`` if given) into an mp4; returns (w, h)."""
    import numpy as np

    from zoo.data.video_io import VideoWriter, open_video

    clip = open_video(source)
    loop = [frame if crop is None else np.ascontiguousarray(frame[: crop[0], : crop[1]]) for frame in clip.iter_frames()]
    with VideoWriter(path, fps=clip.fps_fraction) as writer:
        for index in range(frames):
            writer.write(loop[index % len(loop)])
    return loop[0].shape[1], loop[0].shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 300], help="input lengths to compare")
    parser.add_argument("--source", type=Path, default=None,
                        help="clip to loop (default: ../shared/data/uav_old_video_1/old_video_1.mp4, else the "
                             "embedded sample)")
    parser.add_argument("--crop", default=None, help="HxW top-left crop of the input, e.g. 64x64 (labelled in the output)")
    parser.add_argument("--net", choices=["realbasicvsr", "bicubic"], default="realbasicvsr")
    parser.add_argument("--chunk-frames", type=int, default=30)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--tile-overlap", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    from zoo.testing import sample_clip_dir, shared_data_dir

    source = args.source
    if source is None:
        data = shared_data_dir()
        mp4 = data / "uav_old_video_1" / "old_video_1.mp4" if data else None
        source = mp4 if mp4 is not None and mp4.is_file() else sample_clip_dir()
    crop = tuple(int(v) for v in args.crop.lower().split("x")) if args.crop else None
    passthrough = ["--net", args.net, "--chunk-frames", str(args.chunk_frames), "--overlap", str(args.overlap),
                   "--tile-overlap", str(args.tile_overlap), "--device", args.device, "--dtype", args.dtype,
                   "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.tile:
        passthrough += ["--tile", str(args.tile)]
    with tempfile.TemporaryDirectory(prefix="upscale_memory_") as tmp:
        rows = []
        for frames in args.frames:
            clip = Path(tmp) / f"input_{frames}.mp4"
            width, height = make_input(source, frames, crop, clip)
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "--input", str(clip),
                       "--output", str(Path(tmp) / f"output_{frames}.mp4"), *passthrough]
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["input"] = f"{width}x{height}" + (" (CROP)" if crop else "")
            rows.append(result)
            print(json.dumps(result), flush=True)
    print(f"\nnet={args.net} source={source} chunk_frames={args.chunk_frames} overlap={args.overlap} "
          f"tile={args.tile} tile_overlap={args.tile_overlap} device={args.device} dtype={args.dtype}")
    print(f"{'frames':>7} {'input':>16} {'output':>10} {'seconds':>8} {'RSS before run MiB':>19} {'peak RSS MiB':>13}")
    for row in rows:
        print(f"{row['frames']:>7} {row['input']:>16} {row['size'][0]}x{row['size'][1]:<5} {row['seconds']:>8} "
              f"{row['rss_before_run_mib']:>19} {row['peak_rss_mib']:>13}")


if __name__ == "__main__":
    main()
