"""Text conditioning of the latent-diffusion families: CLIP text-encoder tokens for a batch of prompts.

:func:`clip_text_embeddings` is what Stable Diffusion pipelines feed their UNet's cross-attention: the prompts
tokenized to the tokenizer's padded length (77 for CLIP), the text encoder's last hidden states. Without a text
encoder the tokens are zeros (with the caller's warning), which makes prompts and classifier-free guidance inert.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import warnings

import torch
from torch import nn

from zoo.errors import InputError

__all__ = ["TextConditioning", "clip_text_embeddings", "cross_attention_dim"]


def cross_attention_dim(unet: nn.Module, default: int = 1024) -> int:
    """Channels of the text tokens a diffusers UNet attends to (its first cross-attention layer's; else ``default``)."""
    for module in unet.modules():
        if getattr(module, "is_cross_attention", False):
            return int(module.cross_attention_dim)
    return default


def clip_text_embeddings(text_encoder: nn.Module | None, tokenizer: Any, prompt: str | Sequence[str], batch: int, *,
                         dim: int, device: torch.device | str) -> torch.Tensor:
    """Text tokens for ``batch`` clips.

    Args:
        text_encoder: a transformers ``CLIPTextModel`` (or None: zero tokens).
        tokenizer: its ``CLIPTokenizer`` (or None: zero tokens).
        prompt: one string for the whole batch, or ``batch`` strings.
        batch: clips in the batch.
        dim: token channels of the zero tokens (the UNet's cross-attention dim).
        device: where the tokens go.

    Returns:
        (batch, n, d) float on ``device``: the encoder's last hidden states, prompts padded to ``min(tokenizer
        length, encoder positions)`` tokens; (batch, 77, dim) zeros without an encoder or tokenizer.

    Raises:
        InputError: a list of prompts whose length is not ``batch``.
    """
    prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
    if len(prompts) != batch:
        raise InputError(f"got {len(prompts)} prompts for a batch of {batch} clips")
    if text_encoder is None or tokenizer is None:
        return torch.zeros(batch, 77, dim, device=device)
    config = getattr(text_encoder, "config", None)
    max_length = min(int(tokenizer.model_max_length), int(getattr(config, "max_position_embeddings", 77)))
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    encoder_device = next(text_encoder.parameters()).device
    mask = tokens.attention_mask.to(encoder_device) if getattr(config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids.to(encoder_device), attention_mask=mask)[0].to(device)


class TextConditioning:
    """Mixin of the diffusion pipelines: :attr:`device` (where the UNet runs) and :meth:`encode_prompt`.

    The pipeline sets ``unet``, ``text_encoder``, ``tokenizer`` (either may be None), ``cross_attention_dim`` and
    ``family_label`` (for the warning).
    """

    family_label = "diffusion pipeline"
    _warned_no_text = False

    @property
    def device(self) -> torch.device:
        """Where the UNet runs."""
        return self.unet.conv_in.weight.device

    def encode_prompt(self, prompt: str | Sequence[str], batch: int) -> torch.Tensor:
        """Text tokens for the UNet's cross-attention (:func:`clip_text_embeddings` on :attr:`device`).

        Returns:
            (batch, n, cross_attention_dim); zeros (n = 77) with a one-time warning without a text encoder.

        Raises:
            InputError: a list of prompts whose length is not ``batch``.
        """
        if (self.text_encoder is None or self.tokenizer is None) and not self._warned_no_text:
            warnings.warn(f"{self.family_label}: no text encoder loaded; using zero text embeddings (prompts and "
                          "classifier-free guidance have no effect)", stacklevel=3)
            self._warned_no_text = True
        return clip_text_embeddings(self.text_encoder, self.tokenizer, prompt, batch, dim=self.cross_attention_dim,
                                    device=self.device)
