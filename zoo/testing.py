"""Helpers for tests, benchmarks and notebooks: where the real sample clips are.

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


#: Tiny Upscale-A-Video networks (random init options of ``UpscaleAVideoUNet`` / ``UpscaleAVideoVAE``), as in
#: ``configs/upscale_a_video/tiny_cpu.yaml``: UNet levels of 32/32/64 channels, one block each, one attention head,
#: 32-d text tokens; VAE of three 32-channel levels (x4, like the real one).
TINY_UAV_UNET = dict(
    block_out_channels=(32, 32, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=(True, True, False), attention_head_dim=1, cross_attention_dim=32)
TINY_UAV_VAE = dict(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=32)

#: A tiny CLIP text encoder: 32-d tokens (the tiny Upscale-A-Video UNets' cross-attention width), 77 positions.
TINY_CLIP_TEXT = dict(vocab_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                      max_position_embeddings=77)


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
