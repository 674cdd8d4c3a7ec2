"""Runs the OFFICIAL Upscale-A-Video networks on the parity inputs (executed by ``upscale_a_video_official.py``).

This file is executed in a separate process whose ``PYTHONPATH`` starts with the pinned packages of the official
code (diffusers 0.16.0, ...) and a checkout of sczhou/Upscale-A-Video; it imports only torch and the official
``models_video`` package, never ``zoo``. Usage (done by the parent script)::

    python official_upscale_a_video_runner.py FOLDER INPUTS.pt OUTPUTS.pt

``FOLDER`` is a released-layout folder (``unet/unet_video.bin`` + config, ``vae/vae_3d.bin``, ``vae/vae_video.bin``
+ configs, ``propagator/raft-things.pth``), loaded exactly as the official ``inference_upscale_a_video.py`` does
(``from_config`` then ``load_state_dict``, strict). Inputs and outputs use the official layouts: video tensors
``(b, c, t, h, w)``, VAE latents unscaled (the official pipeline multiplies by ``scaling_factor`` itself).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    args = parser.parse_args()

    import diffusers
    from models_video import AutoencoderKLVideo, UNetVideoModel
    from models_video.RAFT.raft_bi import initialize_RAFT

    torch.set_num_threads(1)
    folder = Path(args.folder)
    x = torch.load(args.inputs)
    out: dict[str, object] = {"diffusers": diffusers.__version__, "torch": str(torch.__version__),
                              "python": sys.version.split()[0]}
    with torch.no_grad():
        unet = UNetVideoModel.from_config(str(folder / "unet" / "unet_video_config.json"))
        unet.load_state_dict(torch.load(folder / "unet" / "unet_video.bin", map_location="cpu"), strict=True)
        unet.eval()
        for name, case in x["unet"].items():
            out[f"unet/{name}"] = unet(case["latents"], case["timestep"], case["lq"],
                                       encoder_hidden_states=case["text"], class_labels=case["noise_level"]).sample
        for vae_name, conditioned in (("vae_3d", False), ("vae_video", True)):
            vae = AutoencoderKLVideo.from_config(str(folder / "vae" / f"{vae_name}_config.json"))
            vae.load_state_dict(torch.load(folder / "vae" / f"{vae_name}.bin", map_location="cpu"), strict=True)
            vae.eval()
            v = x["vae"]
            if conditioned:
                out[f"{vae_name}/decode"] = vae.decode(v["latents"], v["lq"]).sample
            else:
                out[f"{vae_name}/decode"] = vae.decode(v["latents"]).sample
            posterior = vae.encode(v["frames"]).latent_dist
            out[f"{vae_name}/encode_mean"] = posterior.mean
        raft = initialize_RAFT(str(folder / "propagator" / "raft-things.pth"), device="cpu").eval()
        r = x["raft"]
        _, flow = raft(r["image1"], r["image2"], iters=r["iters"], test_mode=True)
        out["raft/flow"] = flow
    torch.save(out, args.outputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
