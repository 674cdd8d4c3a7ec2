"""Size of a training checkpoint of the full-size Upscale-A-Video recipe (``zoo/upscale_a_video.yaml``).

What runs: a local diffusers folder in the ``stabilityai/stable-diffusion-x4-upscaler`` layout is written with random
weights at the real sizes (UNet 473 M, VAE 55 M, CLIP text encoder 340 M; nothing can be downloaded here and the size
does not depend on the values), then the recipe's own command trains ONE step from it on the CPU and writes its
``last.ckpt``::

    lightning fit --config zoo/upscale_a_video.yaml --model.init_args.pretrained=FOLDER --trainer.max_steps=1 ...

(small 64 px clips of the embedded sample, no validation, fp32: the checkpoint's size depends on the model only).
The report gives the file size and what it holds: the model's ``state_dict`` (split by top-level module) and the
optimizer state.

Example (about 10 minutes and 8 GB of temporary disk on a 2-core CPU)::

    python benchmarks/checkpoint_size.py --output benchmarks/results/checkpoint_size_upscale_a_video.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

def describe(ckpt_path: Path) -> dict:
    """File size and the bytes of each part of a Lightning checkpoint."""
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    parts: dict[str, int] = defaultdict(int)
    tensors: dict[str, int] = defaultdict(int)
    for key, value in ckpt["state_dict"].items():
        top = ".".join(key.split(".")[:2])
        parts[top] += value.numel() * value.element_size()
        tensors[top] += 1

    def nbytes(obj: object) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(nbytes(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(v) for v in obj)
        return 0

    return {"file_bytes": ckpt_path.stat().st_size, "state_dict": dict(parts), "state_dict_tensors": dict(tensors),
            "optimizer_bytes": nbytes(ckpt.get("optimizer_states", [])),
            "hyper_parameters_pretrained": str((ckpt.get("hyper_parameters") or {}).get("pretrained"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/checkpoint_size_upscale_a_video.md"))
    args = p.parse_args(argv)
    output = Path(args.output).resolve()  # before the run changes to the project root
    from zoo.cli import lightning_main
    from zoo.testing import write_sd_x4_folder

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_sd_x4_folder(tmp / "sd_x4")  # zoo.testing: random weights at the released sizes
        fit = ["fit", "--config", "zoo/upscale_a_video.yaml",
               f"--model.init_args.pretrained={tmp / 'sd_x4'}", "--trainer.max_steps=1",
               "--trainer.limit_val_batches=0", "--trainer.precision=32-true", "--trainer.accelerator=cpu",
               "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
               f"--trainer.default_root_dir={tmp / 'runs'}", "--data.init_args.num_frames=2",
               "--data.init_args.gt_size=64", "--data.init_args.val_num_frames=2",
               "--data.init_args.val_max_size=64"]
        os.chdir(ROOT)
        code = lightning_main(fit)
        if code:
            return code
        (ckpt,) = sorted((tmp / "runs").rglob("last.ckpt"))
        report = describe(ckpt)
        report["hyper_parameters_pretrained"] = report["hyper_parameters_pretrained"].replace(str(tmp), "TMP")
    report.update(commit=commit, command="python benchmarks/checkpoint_size.py " + " ".join(argv or sys.argv[1:]),
                  fit=" ".join(["lightning"] + [a.replace(str(tmp), "TMP") for a in fit]))
    gb = report["file_bytes"] / 1e9
    lines = [f"# Checkpoint size, full-size Upscale-A-Video recipe (commit {commit})", "",
             f"Command: `{report['command']}`", "", f"Training command it runs: `{report['fit']}`", "",
             f"**last.ckpt: {report['file_bytes']:,} bytes ({gb:.2f} GB)**; optimizer state "
             f"{report['optimizer_bytes']:,} bytes; `pretrained` recorded: `{report['hyper_parameters_pretrained']}`",
             "", "| state_dict part | tensors | bytes |", "|---|---|---|"]
    lines += [f"| `{k}` | {report['state_dict_tensors'][k]} | {v:,} |" for k, v in sorted(report["state_dict"].items())]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
