"""Helpers for tests, benchmarks and notebooks: where the real sample clips are, small real test videos, tiny
tokenizers and seeded official-format weights. (Tiny model sizes are the families' ``variants``, in their
``spec.py``: ``zoo.hub.family(name).variant('tiny')``.)

The embedded sample (``zoo/assets/sample/demo_000``) is the first 20 frames of RealBasicVSR's real-world demo
clip ``data/demo_000`` (ckkelvinchan/RealBasicVSR, Apache-2.0): 640x360 RGB PNG, real low-quality street footage
with no ground truth. The larger shared clips (Vid4 ground truth, Upscale-A-Video's example videos) live outside
the project in ``../shared/data`` and are used only when present.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def sample_clip_dir() -> Path:
    """Return the folder of the embedded real sample clip (20 PNG frames, 640x360, always present)."""
    return _PACKAGE_DIR / "assets" / "sample" / "demo_000"


def shared_data_dir() -> Path | None:
    """Return the shared data folder (``$VSRZOO_SHARED_DATA`` or ``<project>/../shared/data``), or None if absent."""
    env = os.environ.get("VSRZOO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_PACKAGE_DIR.parent.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def write_clip_tokenizer(folder: str | Path, *, words: str = "ab"):  # noqa: ANN201 - transformers.CLIPTokenizer
    """Write a small CLIP BPE tokenizer to ``folder`` and return it loaded (``transformers.CLIPTokenizer``).

    The vocabulary is the two special tokens (ids 0, 1) plus each character of ``words`` as a word end and as a
    word start; there are no merges, so each word of a prompt made of those characters becomes one token per
    character. Prompts are padded to the usual 77 tokens. This is for tests and timing runs that need real
    tokenizer calls but no downloaded vocabulary.

    Raises:
        ValueError: ``words`` has repeated characters.
    """
    import json

    from transformers import CLIPTokenizer

    if len(set(words)) != len(words):
        raise ValueError(f"repeated characters in words={words!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({f"{char}</w>": 2 + i for i, char in enumerate(words)})
    vocab.update({char: 2 + len(words) + i for i, char in enumerate(words)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_small_real_mp4(output: str | Path, *, height: int, width: int, num_frames: int | None = None,
                         square: bool = False) -> Path:
    """Write a small H.264 copy of a real clip, for tests of the video path (frames, size, fps, audio).

    Source: ``../shared/data/uav_old_video_1/old_video_1.mp4`` (real, 28 frames, 25 fps, AAC audio) when the shared
    data is present, and then its whole audio stream is copied; otherwise the embedded sample frames at 25 fps,
    without audio. Each frame is centre-cropped to a square first when ``square``, then area-resized to
    ``height`` x ``width``; only the first ``num_frames`` (None: all) are written.

    Returns:
        ``output`` as a Path.
    """
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    from zoo.data.video_io import open_video

    def small(img: np.ndarray) -> av.VideoFrame:
        h, w = img.shape[:2]
        if square:
            s = min(h, w)
            img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        frame = rearrange(torch.from_numpy(np.ascontiguousarray(img)).float(), "h w c -> 1 c h w")
        frame = F.interpolate(frame, size=(height, width), mode="area")
        array = rearrange(frame[0].round().clamp(0, 255).byte(), "c h w -> h w c").numpy()
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")

    output = Path(output)
    data = shared_data_dir()
    source = data / "uav_old_video_1" / "old_video_1.mp4" if data else None
    with av.open(str(output), "w") as outp:
        if source is not None and source.is_file():
            with av.open(str(source)) as inp:
                vin, ain = inp.streams.video[0], inp.streams.audio[0]
                vout = outp.add_stream("libx264", rate=vin.average_rate)
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                aout = outp.add_stream_from_template(ain)
                written = 0
                for packet in inp.demux(vin, ain):
                    if packet.stream is ain:
                        if packet.dts is not None:
                            packet.stream = aout
                            outp.mux(packet)
                        continue
                    for frame in packet.decode():
                        if num_frames is None or written < num_frames:
                            outp.mux(vout.encode(small(frame.to_ndarray(format="rgb24"))))
                            written += 1
        else:
            vout = outp.add_stream("libx264", rate=25)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            for img in open_video(sample_clip_dir()).iter_frames(stop=num_frames):
                outp.mux(vout.encode(small(img)))
        outp.mux(vout.encode())
    return output


def assert_upscaled_copy(source: str | Path, output: str | Path, *, scale: int = 4) -> None:
    """Assert the video I/O contract of ``vsrzoo upscale``: ``output`` has every frame of ``source``, ``scale``
    times its size, the same fps (to 1e-3) and an audio stream exactly when the source has one.

    Raises:
        AssertionError: naming the property that differs.
    """
    from zoo.data.video_io import open_video

    src, out = open_video(source), open_video(output)
    assert out.num_frames == src.num_frames, f"{out.num_frames} frames written, {src.num_frames} read"
    assert (out.width, out.height) == (scale * src.width, scale * src.height), (
        f"output {out.width}x{out.height} is not x{scale} of {src.width}x{src.height}")
    assert abs(out.fps - src.fps) < 1e-3, f"fps {out.fps} != source {src.fps}"
    assert out.has_audio == src.has_audio, f"audio: output {out.has_audio}, source {src.has_audio}"


def official_random_state(entry: dict, seed: int = 0) -> dict:
    """Seeded random tensors with the names and shapes of an official state dict (for parity and golden tests).

    Args:
        entry: ``{'keys': {name: shape}}`` as in ``tests/data/upscale_a_video_official_keys.json`` (the key set of a
            tiny official model, in the official order).
        seed: seed of the CPU generator; tensors are drawn in the order of ``entry['keys']``.

    Returns:
        ``{name: tensor}``: N(0, 0.1^2) for weights; RoPE ``*.rotary_emb.freqs`` get their fixed table
        ``10000 ** (-2i / 32)``, BatchNorm ``num_batches_tracked`` 3 and ``running_var`` U(0.5, 1.5); RAFT's twin
        ``norm3`` / ``downsample.1`` tensors of stride-2 blocks are made equal, as in the released file.
    """
    import torch

    rope = 1.0 / 10000.0 ** (torch.arange(0, 32, 2, dtype=torch.float32) / 32)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in entry["keys"].items():
        if key.endswith("rotary_emb.freqs"):
            state[key] = rope.clone()
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    for key in state:
        if ".norm3." in key and ".layer" in key:  # RAFT stride-2 blocks only
            state[key] = state[key.replace(".norm3.", ".downsample.1.")]
    return state


#: ``stabilityai/stable-diffusion-x4-upscaler`` ``unet/config.json`` (the options that differ from diffusers'
#: ``UNet2DConditionModel`` defaults) and ``vae/config.json``, text encoder ``text_encoder/config.json``.
SD_X4_UNET = dict(in_channels=7, out_channels=4, block_out_channels=(256, 512, 512, 1024), layers_per_block=2,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                    "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  only_cross_attention=(True, True, True, False), attention_head_dim=8, cross_attention_dim=1024,
                  num_class_embeds=1000, use_linear_projection=True)
SD_X4_VAE = dict(block_out_channels=(128, 256, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32)
SD_X4_TEXT_ENCODER = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                          num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512)


def write_sd_x4_folder(folder: str | Path, *, unet: dict | None = None, vae: dict | None = None,
                       text_encoder: dict | None = None, seed: int = 0) -> Path:
    """Write a diffusers SD x4 upscaler folder with RANDOM weights (for tests and size/timing benchmarks).

    Layout of ``stabilityai/stable-diffusion-x4-upscaler``: ``unet/``, ``vae/`` (scaling factor 0.08333),
    ``text_encoder/`` + ``tokenizer/`` (a small local vocabulary: 77 padded tokens like the real one), ``scheduler/``
    (DDIM, v-prediction) and ``low_res_scheduler/`` (DDPM), from :data:`SD_X4_UNET`, :data:`SD_X4_VAE`,
    :data:`SD_X4_TEXT_ENCODER` updated with ``unet`` / ``vae`` / ``text_encoder`` (e.g. a family's tiny variant).

    Returns:
        ``folder`` as a Path.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    folder = Path(folder)
    vae_config = {**SD_X4_VAE, **(vae or {})}
    levels = len(vae_config["block_out_channels"])
    _write_components(folder, unet={**SD_X4_UNET, **(unet or {})},
                      vae=dict(down_block_types=("DownEncoderBlock2D",) * levels,
                               up_block_types=("UpDecoderBlock2D",) * levels, scaling_factor=0.08333, **vae_config),
                      text_encoder={**SD_X4_TEXT_ENCODER, **(text_encoder or {})}, seed=seed)
    DDIMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
                  prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                  steps_offset=1).save_config(folder / "scheduler")
    DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                  beta_schedule="scaled_linear").save_config(folder / "low_res_scheduler")
    return folder


def _write_components(folder: Path, *, unet: dict, vae: dict, text_encoder: dict, seed: int) -> None:
    """``unet/``, ``vae/``, ``text_encoder/`` (random weights, seeded) and ``tokenizer/`` (a small local vocabulary,
    77 padded tokens) of a diffusers pipeline folder."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = dict(unet)
    if "only_cross_attention" in unet and not isinstance(unet["only_cross_attention"], bool):
        unet["only_cross_attention"] = list(unet["only_cross_attention"])
    UNet2DConditionModel(**unet).save_pretrained(folder / "unet")
    AutoencoderKL(**vae).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(**text_encoder)).save_pretrained(folder / "text_encoder")
    write_clip_tokenizer(folder / "tokenizer", words="abcdefghijklmnopqrstuvwxyz,")


def write_sd_base_folder(folder: str | Path, *, unet: dict | None = None, vae: dict | None = None,
                         text_encoder: dict | None = None, seed: int = 0) -> Path:
    """Write a diffusers ``stabilityai/stable-diffusion-2-1-base``-layout folder with RANDOM weights (tests, timing).

    ``unet/``, ``vae/`` (8x, scaling factor 0.18215), ``text_encoder/`` + ``tokenizer/`` (a small local vocabulary:
    77 padded tokens like the real one) and ``scheduler/`` (SD 2.1-base's PNDM configuration: scaled-linear betas
    0.00085 -> 0.012, epsilon), from :mod:`zoo.diffusion.bases` updated with ``unet`` / ``vae`` / ``text_encoder``
    (e.g. a family's tiny variant).

    Returns:
        ``folder`` as a Path.
    """
    from diffusers import PNDMScheduler

    from zoo.diffusion.bases import SD21_BASE_TEXT_ENCODER, SD21_BASE_UNET, SD21_BASE_VAE

    folder = Path(folder)
    _write_components(folder, unet={**SD21_BASE_UNET, **(unet or {})}, vae={**SD21_BASE_VAE, **(vae or {})},
                      text_encoder={**SD21_BASE_TEXT_ENCODER, **(text_encoder or {})}, seed=seed)
    PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type="epsilon", skip_prk_steps=True, set_alpha_to_one=False,
                  steps_offset=1).save_config(folder / "scheduler")
    return folder


def write_svd_folder(folder: str | Path, *, unet: dict | None = None, vae: dict | None = None, seed: int = 0,
                     with_unet: bool = True, image_encoder: dict | None = None) -> Path:
    """Write a diffusers ``stabilityai/stable-video-diffusion-img2vid``-layout folder with RANDOM weights (tests,
    timing).

    ``unet/`` (``UNetSpatioTemporalConditionModel``; skipped when ``with_unet`` is False), ``vae/``
    (``AutoencoderKLTemporalDecoder``) and ``scheduler/`` (SVD's ``EulerDiscreteScheduler`` configuration), from
    :mod:`zoo.diffusion.bases` updated with ``unet`` / ``vae`` (e.g. a family's tiny variant). The image encoder
    (``image_encoder/``, SVD's CLIP ViT-H) is written only when ``image_encoder`` gives ``transformers.
    CLIPVisionConfig`` options (its ``projection_dim`` must be the UNet's ``cross_attention_dim``).

    Returns:
        ``folder`` as a Path.
    """
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel

    from zoo.diffusion.bases import SVD_SCHEDULER, SVD_UNET, SVD_VAE

    folder = Path(folder)
    torch.manual_seed(seed)
    if with_unet:
        UNetSpatioTemporalConditionModel(**{**SVD_UNET, **(unet or {})}).save_pretrained(folder / "unet")
    AutoencoderKLTemporalDecoder(**{**SVD_VAE, **(vae or {})}).save_pretrained(folder / "vae")
    EulerDiscreteScheduler.from_config(SVD_SCHEDULER).save_config(folder / "scheduler")
    if image_encoder is not None:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        CLIPVisionModelWithProjection(CLIPVisionConfig(**image_encoder)).save_pretrained(folder / "image_encoder")
    return folder


def write_unet_ema_folder(folder: str | Path, *, unet: dict | None = None, seed: int = 0) -> Path:
    """Write a folder in the layout of DC-VSR's released UNet with RANDOM weights: ``folder/unet_ema/`` holding
    ``config.json`` and ``diffusion_pytorch_model.safetensors`` of a ``UNetSpatioTemporalConditionModel`` (SVD
    img2vid sizes updated with ``unet``), nothing else.

    Returns:
        the ``unet_ema`` folder.
    """
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    from zoo.diffusion.bases import SVD_UNET

    torch.manual_seed(seed)
    target = Path(folder) / "unet_ema"
    UNetSpatioTemporalConditionModel(**{**SVD_UNET, **(unet or {})}).save_pretrained(target, safe_serialization=True)
    return target


def assert_upscale_run(code: int, captured: object, source: str | Path, output: str | Path, *, scale: int = 4):  # noqa: ANN201
    """Check a ``vsrzoo upscale`` run of a video (pytest's ``capsys.readouterr()`` as ``captured``): exit status 0, the
    summary line with every frame at ``scale`` times the size, :func:`assert_upscaled_copy` (fps, audio stream, frame
    count), the source's 25 fps and audio when it is the real clip of the shared data, and frames that are not
    constant. Returns the output frames (t, 3, H, W) float in [0, 1]."""
    import re

    from zoo.data.video_io import open_video

    assert code == 0, captured.err
    src = open_video(source)
    width, height = scale * src.width, scale * src.height
    assert re.search(rf"{src.num_frames} frames, {width}x{height}", captured.out), captured.out
    assert_upscaled_copy(source, output, scale=scale)
    if shared_data_dir() is not None:
        assert src.has_audio and abs(src.fps - 25) < 1e-6
    frames = open_video(output).read()
    assert frames.shape == (src.num_frames, 3, height, width) and frames.std() > 0
    return frames


def assert_usage_error(code: int, err: str, expect: str) -> str:
    """Check a command that failed on bad input: exit status 2, a last stderr line ``error: ...`` containing
    ``expect`` and no traceback. Returns that line."""
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # libraries may draw progress bars before it
    assert last.startswith("error: ") and "Traceback" not in err and expect in last, last
    return last
