"""Record the OFFICIAL Upscale-A-Video networks' outputs for the CI parity test (not run by CI).

Official code: https://github.com/sczhou/Upscale-A-Video, commit 10ca1d751cad25b8ac0b9b0cab415a82d9df1ac6
(``models_video/unet_video.py``, ``autoencoder_kl_cond_video.py``, ``vae_video.py``, ``RAFT/raft.py``,
``RAFT/raft_bi.py``), with the versions its ``requirements.txt`` pins for what these networks import:
diffusers 0.16.0, transformers 4.28.1 (+ tokenizers 0.13.3, imported by diffusers), huggingface_hub 0.16.4 (the last
one diffusers 0.16 imports cleanly), rotary-embedding-torch 0.2.3, imageio 2.25.0; torch is this project's (the
official pin, 2.0.1, has no wheel for this Python). Setup, outside the project::

    git clone https://github.com/sczhou/Upscale-A-Video /path/to/Upscale-A-Video
    git -C /path/to/Upscale-A-Video checkout 10ca1d751cad25b8ac0b9b0cab415a82d9df1ac6
    .venv/bin/pip install --no-deps --target /path/to/official-env diffusers==0.16.0 transformers==4.28.1 \\
        tokenizers==0.13.3 huggingface_hub==0.16.4 rotary-embedding-torch==0.2.3 imageio==2.25.0
    .venv/bin/python benchmarks/parity/upscale_a_video_official.py \\
        --official-src /path/to/Upscale-A-Video --official-env /path/to/official-env

What it does:

1. writes a released-layout folder of the tiny official models of ``tests/data/upscale_a_video_official_keys.json``
   (UNet, ``vae_3d``, ``vae_video``) and a full-size RAFT, with seeded random weights in the official key format
   (every tensor random, temporal layers included; :func:`zoo.testing.official_random_state`, the seeds of
   ``upscale_a_video_port_goldens.py``). The weights (about 40 MB) are not committed: the test regenerates them from
   the committed key lists and seeds and checks them against the SHA-256 of every tensor recorded here;
2. builds fixed inputs (seeded latents and text tokens, LQ and VAE frames and RAFT image pairs from the embedded
   real sample);
3. runs ``official_upscale_a_video_runner.py`` in a separate process with ``PYTHONPATH`` = the official env and
   source: the official classes load the folder exactly as ``inference_upscale_a_video.py`` does;
4. saves inputs, official outputs and metadata to ``tests/data/parity/upscale_a_video_official.pt``.

``tests/test_upscale_a_video_parity.py`` loads the same folder with :func:`zoo.models.upscale_a_video.load
.load_upscale_a_video` and asserts a max abs error <= 1e-4 relative to the largest official output value for the
UNet, both VAEs (decode and encode) and RAFT.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

ROOT = Path(__file__).resolve().parents[1].parent
OUTPUT = ROOT / "tests" / "data" / "parity" / "upscale_a_video_official.pt"
RUNNER = Path(__file__).with_name("official_upscale_a_video_runner.py")
OFFICIAL = {"repo": "https://github.com/sczhou/Upscale-A-Video", "commit": "10ca1d751cad25b8ac0b9b0cab415a82d9df1ac6"}
PINNED = {"diffusers": "0.16.0", "transformers": "4.28.1", "tokenizers": "0.13.3", "huggingface_hub": "0.16.4",
          "rotary-embedding-torch": "0.2.3", "imageio": "2.25.0"}
#: UNet cases: (timestep, noise level) per clip of a batch of two.
UNET_CASES = {"t999_n120": (999, 120), "t321_n20": (321, 20)}
RAFT_ITERS = 12


def goldens_module():  # noqa: ANN201 - the module with the released-folder writer and its weight seeds
    spec = importlib.util.spec_from_file_location("uav_goldens", Path(__file__).with_name(
        "upscale_a_video_port_goldens.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def state_digests(folder: Path) -> dict[str, str]:
    """SHA-256 over every tensor (key order, names, dtypes, shapes, bytes) of each weight file of the folder."""
    files = {"unet_video": "unet/unet_video.bin", "vae_3d": "vae/vae_3d.bin", "vae_video": "vae/vae_video.bin",
             "raft": "propagator/raft-things.pth"}
    digests = {}
    for name, relative in files.items():
        state = torch.load(folder / relative, map_location="cpu")
        digest = hashlib.sha256()
        for key, value in state.items():
            value = value.detach().contiguous().cpu()
            digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(value.numpy().tobytes())
        digests[name] = digest.hexdigest()
    return digests


def real_frames(num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """Frames of the embedded real sample, area-resized: (t, 3, h, w) in [0, 1]."""
    from zoo.data.video_io import open_video
    from zoo.testing import sample_clip_dir

    return F.interpolate(open_video(sample_clip_dir()).read(0, num_frames), size=size, mode="area")


def parity_inputs() -> dict:
    """Fixed inputs in OUR layouts ((b, t, c, h, w); VAE latents scaled by ``scaling_factor``)."""
    g = torch.Generator().manual_seed(2024)
    lq = real_frames(5, (16, 16)) * 2 - 1                     # latent-resolution LQ in [-1, 1]
    unet = {}
    for name, (timestep, noise_level) in UNET_CASES.items():
        unet[name] = {
            "latents": torch.randn(2, 5, 4, 16, 16, generator=g),
            "lq": torch.stack([lq, lq.flip(0)]),               # two clips: the sample and its time reversal
            "text": torch.randn(2, 6, 32, generator=g),
            "timestep": timestep,
            "noise_level": noise_level,
        }
    frames = real_frames(3, (32, 32)) * 2 - 1
    vae = {"latents": torch.randn(1, 3, 4, 16, 16, generator=g), "lq": real_frames(3, (16, 16))[None] * 2 - 1,
           "frames": frames[None]}
    pair = real_frames(4, (128, 160)) * 2 - 1
    raft = {"image1": pair[[0, 1]], "image2": pair[[2, 3]], "iters": RAFT_ITERS}
    return {"unet": unet, "vae": vae, "raft": raft}


def to_official(x: dict, scaling_factor: float) -> dict:
    """Our inputs in the official layouts: (b, c, t, h, w), unscaled VAE latents, (b,) noise levels."""
    unet = {}
    for name, case in x["unet"].items():
        b = case["latents"].shape[0]
        unet[name] = {"latents": rearrange(case["latents"], "b t c h w -> b c t h w").contiguous(),
                      "lq": rearrange(case["lq"], "b t c h w -> b c t h w").contiguous(),
                      "text": case["text"], "timestep": torch.tensor(float(case["timestep"])),
                      "noise_level": torch.full((b,), case["noise_level"], dtype=torch.long)}
    v = x["vae"]
    vae = {"latents": rearrange(v["latents"] / scaling_factor, "b t c h w -> b c t h w").contiguous(),
           "lq": rearrange(v["lq"], "b t c h w -> b c t h w").contiguous(),
           "frames": rearrange(v["frames"], "b t c h w -> b c t h w").contiguous()}
    return {"unet": unet, "vae": vae, "raft": x["raft"]}


def from_official(out: dict, scaling_factor: float) -> dict[str, torch.Tensor]:
    """Official outputs in our layouts (scaled latents for encode)."""
    mine = {}
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key == "raft/flow":
            mine[key] = value
        elif key.endswith("encode_mean"):
            mine[key] = rearrange(value * scaling_factor, "b c t h w -> b t c h w")
        else:
            mine[key] = rearrange(value, "b c t h w -> b t c h w")
    return {k: v.contiguous() for k, v in mine.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-src", required=True, help="checkout of sczhou/Upscale-A-Video at the commit")
    parser.add_argument("--official-env", required=True, help="pip --target folder with the pinned packages")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    src = Path(args.official_src).resolve()
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if commit and commit != OFFICIAL["commit"]:
        raise SystemExit(f"{src} is at {commit}, expected {OFFICIAL['commit']}")

    torch.set_num_threads(1)
    recorder = goldens_module()
    keys = json.loads(recorder.KEYS_FILE.read_text())
    scaling = {name: float(keys[name]["config"]["scaling_factor"]) for name in ("vae_3d", "vae_video")}
    if scaling["vae_3d"] != scaling["vae_video"]:
        raise SystemExit("the two tiny VAEs have different scaling factors")
    inputs = parity_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "released"
        recorder.write_released_folder(folder)
        digests = state_digests(folder)
        torch.save(to_official(inputs, scaling["vae_3d"]), tmp / "inputs.pt")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(args.official_env).resolve()), str(src)]))
        command = [sys.executable, str(RUNNER), str(folder), str(tmp / "inputs.pt"), str(tmp / "outputs.pt")]
        subprocess.run(command, cwd=src, env=env, check=True)
        official = torch.load(tmp / "outputs.pt")
    record = {
        "inputs": inputs,
        "official": from_official(official, scaling["vae_3d"]),
        "meta": {"official": OFFICIAL, "pinned": PINNED, "official_process": {k: v for k, v in official.items()
                                                                               if not isinstance(v, torch.Tensor)},
                 "weight_seeds": dict(recorder.WEIGHT_SEEDS), "weight_sha256": digests,
                 "command": "python benchmarks/parity/upscale_a_video_official.py --official-src <checkout of "
                            "sczhou/Upscale-A-Video at the commit> --official-env <pip --target folder of the pins>",
                 "scaling_factor": scaling["vae_3d"], "raft_iters": RAFT_ITERS},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    torch.save(record, partial)
    os.replace(partial, output)
    for name, value in record["official"].items():
        print(f"{name}: {tuple(value.shape)} abs max {value.abs().max():.4f}")
    print(f"wrote {output} ({output.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
