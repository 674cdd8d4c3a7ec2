"""Golden outputs of the tiny Upscale-A-Video networks and sampler, recorded before the move to ``zoo/diffusion/``.

The committed ``tests/data/upscale_a_video_goldens.pt`` was written by this script at commit 76f3932 (the last commit
before the shared latent-diffusion layer), from the project root::

    .venv/bin/python benchmarks/parity/upscale_a_video_port_goldens.py

``tests/test_upscale_a_video_goldens.py`` uses the same builders (:func:`write_released_folder`,
:func:`network_inputs`, :func:`real_lq_clip`, :data:`SAMPLING`) and checks that the code of today reproduces these
outputs. Since the port the script imports the modules under their new names (the folder, inputs and options it builds
are unchanged); running it now records what today's code computes, so it refuses to overwrite the file without
``--force``. What is recorded:

- the tiny official models of ``tests/data/upscale_a_video_official_keys.json`` (UNet, vae_3d, vae_video) with
  seeded random weights in the released (official key) format (:func:`zoo.testing.official_random_state`), loaded
  through the converter from a released-layout folder, on fixed seeded inputs;
- the whole sampler on a real clip (frames 0-5 of the embedded sample, area-resized to 128x128 LQ): tiny CLIP text
  encoder, classifier-free guidance 6, noise level 60, 3 DDIM steps with latent propagation (RAFT) at step 1, 4-frame
  windows sharing 1 and 96 px tiles sharing 32 (2 windows x 4 tiles), wavelet colour fix, seed 7. Stored: the final
  latents at every second latent pixel and the output at every fourth pixel (the file stays small).

The weights are not stored: they are regenerated from the key lists and seeds. Only inputs and outputs are.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

ROOT = Path(__file__).resolve().parents[2]
KEYS_FILE = ROOT / "tests" / "data" / "upscale_a_video_official_keys.json"
OUTPUT = ROOT / "tests" / "data" / "upscale_a_video_goldens.pt"

#: Seeds of the released-format weights, per component.
WEIGHT_SEEDS = {"unet_video": 11, "vae_3d": 12, "vae_video": 13, "raft": 14}
#: SD x4 upscaler schedulers (diffusers folder configs).
SCHEDULER = dict(_class_name="DDIMScheduler", num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                 beta_schedule="scaled_linear", prediction_type="v_prediction", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1)
LOW_RES_SCHEDULER = dict(_class_name="DDPMScheduler", num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                         beta_schedule="scaled_linear")
#: Sampler options of the recorded run.
SAMPLING = dict(prompt="a b", negative_prompt="b a", noise_level=60, guidance_scale=6.0, num_inference_steps=3,
                propagation_steps=(1,), color_fix="wavelet", seed=7, window=4, window_overlap=1, tile=96,
                tile_overlap=32, vae_chunk=3, progress=False)
LQ_FRAMES, LQ_SIZE = 6, 128


def write_released_folder(root: Path) -> None:
    """A released-layout Upscale-A-Video folder of tiny official models with seeded random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from zoo.hub import family
    from zoo.testing import official_random_state, write_clip_tokenizer

    keys = json.loads(KEYS_FILE.read_text())
    for sub in ("unet", "vae", "propagator", "scheduler", "low_res_scheduler"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "unet" / "unet_video_config.json").write_text(json.dumps(keys["unet_video"]["config"]))
    torch.save(official_random_state(keys["unet_video"], WEIGHT_SEEDS["unet_video"]), root / "unet" / "unet_video.bin")
    for name in ("vae_3d", "vae_video"):
        (root / "vae" / f"{name}_config.json").write_text(json.dumps(keys[name]["config"]))
        torch.save(official_random_state(keys[name], WEIGHT_SEEDS[name]), root / "vae" / f"{name}.bin")
    torch.save(official_random_state(keys["raft"], WEIGHT_SEEDS["raft"]), root / "propagator" / "raft-things.pth")
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (root / "low_res_scheduler" / "scheduler_config.json").write_text(json.dumps(LOW_RES_SCHEDULER))
    torch.manual_seed(0)
    text = family("upscale_a_video").variant("tiny")["text_encoder"]  # the 32-d text encoder of the tiny variant
    CLIPTextModel(CLIPTextConfig(**text)).eval().save_pretrained(root / "text_encoder")
    write_clip_tokenizer(root / "tokenizer")


def network_inputs() -> dict[str, torch.Tensor]:
    """Fixed seeded inputs of the network goldens."""
    g = torch.Generator().manual_seed(5)
    return {
        "latents": torch.randn(1, 3, 4, 8, 8, generator=g),
        "lq": torch.rand(1, 3, 3, 8, 8, generator=g) * 2 - 1,
        "text": torch.randn(1, 4, 32, generator=g),
        "frames": torch.rand(1, 3, 3, 16, 16, generator=g) * 2 - 1,
    }


def real_lq_clip() -> torch.Tensor:
    """Frames 0-5 of the embedded real sample, area-resized to 128x128: (1, 6, 3, 128, 128) in [0, 1]."""
    from zoo.data.video_io import open_video
    from zoo.testing import sample_clip_dir

    frames = open_video(sample_clip_dir()).read(0, LQ_FRAMES)  # (t, 3, h, w) float in [0, 1]
    frames = F.interpolate(frames, size=(LQ_SIZE, LQ_SIZE), mode="area")
    return rearrange(frames, "t c h w -> 1 t c h w").contiguous()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from zoo.models.upscale_a_video.load import load_upscale_a_video
    from zoo.models.upscale_a_video.sampling import UpscaleAVideoPipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--force", action="store_true", help="overwrite an existing goldens file")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.force:
        raise SystemExit(f"{output} exists (the committed goldens of commit 76f3932); pass --force to overwrite")

    torch.set_num_threads(1)
    x = network_inputs()
    goldens: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        folder = Path(tmp)
        write_released_folder(folder)
        plain = load_upscale_a_video(folder, load_text_encoder=False, load_flow_net=False)
        goldens["unet"] = plain.unet(x["latents"], 500, x["lq"], 20, x["text"])
        goldens["vae_3d_decode"] = plain.vae.decode(x["latents"])
        goldens["vae_3d_encode"] = plain.vae.encode(x["frames"])
        parts = load_upscale_a_video(folder, use_video_vae=True)
        goldens["vae_video_decode"] = parts.vae.decode(x["latents"], x["lq"])
        goldens["vae_video_encode"] = parts.vae.encode(x["frames"])
        pipeline = UpscaleAVideoPipeline(parts).eval()
        lq = real_lq_clip()
        options = dict(SAMPLING)
        decode = {k: options.pop(k) for k in ("color_fix", "vae_chunk")}
        # the recorded run averaged overlapping windows with a plain mean: window_blend='uniform' since the port
        latents = pipeline.sample_latents(lq, window_blend="uniform", **options)
        sr = pipeline.decode_latents(latents, lq, color_fix=decode["color_fix"], tile=options["tile"],
                                     tile_overlap=options["tile_overlap"], vae_chunk=decode["vae_chunk"])
        goldens["sampler_latents_s2"] = latents[..., ::2, ::2].contiguous()
        goldens["sampler_sr_s4"] = sr[..., ::4, ::4].contiguous()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    goldens["meta"] = {"commit": commit, "torch": str(torch.__version__), "command": " ".join(sys.argv),
                       "sampling": {k: (list(v) if isinstance(v, tuple) else v) for k, v in SAMPLING.items()}}
    torch.save(goldens, output)
    for name, value in goldens.items():
        if isinstance(value, torch.Tensor):
            print(f"{name}: {tuple(value.shape)} mean {value.mean():.6f} abs max {value.abs().max():.4f}")
    print(f"wrote {output} ({output.stat().st_size / 1e6:.2f} MB) at commit {commit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
