"""DC-VSR's attention mechanisms as diffusers attention processors: SAP, TAP and DSSAG.

Han et al., "DC-VSR: Spatially and Temporally Consistent Video Super-Resolution with Video Diffusion Prior", arXiv
2502.03502, Sec. 4 (attention propagation over tiles) and Sec. 5 (detail-suppression self-attention guidance). The
sampler processes a video as overlapping spatio-temporal tiles; each tile's spatial self-attention would otherwise see
only its own tile. One :class:`PropagationAttnProcessor` sits on every spatial self-attention layer (``attn1`` of the
``transformer_blocks`` of a diffusers ``UNetSpatioTemporalConditionModel``; the temporal blocks are untouched); all
of them read one :class:`PropagationControl`, which the sampler updates before each step and each tile.

- **SAP** (spatial attention propagation, paper Eq. 2) on the propagation layers (the first two and the last two
  spatial self-attention layers in execution order, :func:`propagation_layers`): the tile's keys and values are
  extended with keys and values of features subsampled uniformly over the whole frame (every ``stride``-th token of
  the layer's grid in both directions, the grid starting at ``stride // 2``). The features of the whole frame come from
  a frame-level store of the layer's input (its normalised hidden states at the subsampled positions only), written by
  every tile on every step (SAP or TAP) while SAP is on: on a SAP step each tile first writes the positions it covers,
  then reads the whole frame's, so a frame mixes this step's features (tiles already done) with the previous step's
  (tiles not yet done). Positions never written (SAP alone, first step) are masked.
- **TAP** (temporal attention propagation): keys and values carried from the tile's temporal neighbour at the same
  spatial position, the previous tile in time on a forward step and the next one on a backward step (the sampler
  visits tiles in that order): of the neighbour's frames, the ``num_frames_kept`` (L = 4) whose keys have the largest
  standard deviation, their keys and values appended to every frame's.
- SAP and TAP alternate across sampling steps (TAP first, forward; the TAP steps alternate direction).
- **DSSAG** (paper Eq. 7-10) on every spatial self-attention layer: the rows of the unconditional branch of
  classifier-free guidance (the first ``uncond_rows`` clips of the batch, :func:`zoo.diffusion.sampler.
  classifier_free_guidance`'s order) use ``softmax(gamma q k^T / sqrt(d)) v``; ``gamma < 1`` flattens the weights,
  like a larger range parameter of a bilateral or non-local-means filter, so the unconditional estimate loses fine
  detail and guidance pushes towards it. ``gamma`` follows the noise level (:func:`dssag_gamma`). No extra UNet pass.

With nothing active (no tile set, no guidance, or every switch off) a processor calls diffusers' own
``AttnProcessor2_0``, so the UNet computes exactly what it computes without them. The paper does not give the SAP
stride, the gamma schedule's formula or how the store is filled; those are ours (family README).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F

from zoo.diffusion.attention import set_attention_processor
from zoo.errors import ConfigError

__all__ = ["PropagationAttnProcessor", "PropagationControl", "TileState", "dssag_gamma", "install_processors",
           "propagation_layers", "spatial_self_attention_layers"]

Span = tuple[int, int]


def spatial_self_attention_layers(unet: nn.Module) -> list[str]:
    """Names (``'<path>'``, without ``.processor``) of the spatial self-attention layers of a
    ``UNetSpatioTemporalConditionModel``, in execution order (down blocks, mid block, up blocks).

    diffusers' ``attn_processors`` lists the mid block after the up blocks; the UNet runs it between them.
    """
    names = [name for name, module in unet.named_modules()
             if isinstance(module, Attention) and name.endswith(".attn1") and ".transformer_blocks." in name]
    rank = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}

    def order(name: str) -> tuple:
        parts = name.split(".")
        numbers = tuple(int(p) for p in parts if p.isdigit())
        return (rank.get(parts[0], 3),) + numbers

    return sorted(names, key=order)


def propagation_layers(unet: nn.Module, first: int = 2, last: int = 2) -> list[str]:
    """The layers SAP and TAP act on: the ``first`` and the ``last`` spatial self-attention layers in execution order
    (paper: two and two)."""
    names = spatial_self_attention_layers(unet)
    chosen = names[:first] + (names[-last:] if last else [])
    return list(dict.fromkeys(chosen))


def dssag_gamma(sigma: float, *, sigma_min: float, sigma_max: float, gamma_min: float, rho: float) -> float:
    """DSSAG's attention weighting ``gamma`` at noise level ``sigma`` (ours; the paper's Eq. 10 schedules gamma over the
    denoising steps with rho = 0.5 but its formula is not reachable).

    ``s = clamp((ln sigma - ln sigma_min) / (ln sigma_max - ln sigma_min), 0, 1)`` (the noise level on a log scale,
    1 at the start of sampling) and ``gamma = gamma_min + (1 - gamma_min) s ** rho``: no suppression at the highest
    noise, ``gamma_min`` at the lowest; ``rho < 1`` keeps gamma near 1 over the noisy steps and lowers it over the last
    ones, where fine detail forms.

    Raises:
        ConfigError: ``gamma_min`` outside (0, 1] or ``rho <= 0``.
    """
    if not 0.0 < gamma_min <= 1.0:
        raise ConfigError(f"DSSAG gamma_min must be in (0, 1]; got {gamma_min}")
    if rho <= 0:
        raise ConfigError(f"DSSAG rho must be > 0; got {rho}")
    s = (math.log(max(sigma, 1e-12)) - math.log(sigma_min)) / (math.log(sigma_max) - math.log(sigma_min))
    s = min(1.0, max(0.0, s))
    return gamma_min + (1.0 - gamma_min) * s**rho


@dataclass
class TileState:
    """Where the current UNet call is: the tile's latent ``spans`` ((t0, t1), (y0, y1), (x0, x1)) in a clip of
    latent ``shape`` (T, H, W), and its spatial position ``key`` (row, column index of the tile plan; TAP carries
    along time at one spatial position)."""

    spans: tuple[Span, Span, Span]
    shape: tuple[int, int, int]
    key: tuple[int, int]


@dataclass
class _Store:
    """SAP's frame-level store of one layer: the layer input at the subsampled positions of every frame."""

    values: torch.Tensor  # (rows, T, gh, gw, c) CPU
    filled: torch.Tensor  # (T, gh, gw) bool
    ys: torch.Tensor      # (gh,) layer-grid rows of the subsample
    xs: torch.Tensor      # (gw,)


@dataclass
class PropagationControl:
    """The state every :class:`PropagationAttnProcessor` of one UNet reads (set by the sampler).

    Attributes:
        sap, tap, dssag: the switches.
        sap_stride: subsampling stride of SAP on each layer's token grid (ours: 4).
        num_frames_kept: L of TAP (paper: 4).
        mode: ``'sap'``, ``'tap'`` or None for the current step.
        gamma: DSSAG's gamma for the current step (None: off).
        uncond_rows: clips of the batch that are the unconditional branch (first in the batch; 0: none).
        num_frames: frames per clip of the current UNet call (its attention rows are clips x frames).
        tile: the current tile (None outside the tiled sampler: no propagation).
    """

    sap: bool = True
    tap: bool = True
    dssag: bool = True
    sap_stride: int = 4
    num_frames_kept: int = 4
    mode: str | None = None
    gamma: float | None = None
    uncond_rows: int = 0
    num_frames: int = 0
    tile: TileState | None = None
    stores: dict[str, _Store] = field(default_factory=dict)
    carries: dict[tuple[str, tuple[int, int]], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _pending: dict[tuple[str, tuple[int, int]], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("sap_stride", "num_frames_kept"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")

    def step_mode(self, index: int) -> tuple[str | None, bool]:
        """``(mode, backward)`` of sampling step ``index``: with both SAP and TAP on, even steps TAP (forward on
        steps 0, 4, 8, ..., backward on 2, 6, ...) and odd steps SAP; with one of them, every step that one (TAP
        alternating direction)."""
        if self.sap and self.tap:
            return ("tap", index % 4 == 2) if index % 2 == 0 else ("sap", False)
        if self.tap:
            return "tap", index % 2 == 1
        if self.sap:
            return "sap", False
        return None, False

    def reset(self) -> None:
        """Forget every store and carry (a new clip)."""
        self.stores.clear()
        self.carries.clear()
        self._pending.clear()
        self.mode, self.gamma, self.tile, self.uncond_rows, self.num_frames = None, None, None, 0, 0

    def begin_step(self, mode: str | None, gamma: float | None) -> None:
        """A new sampling step: TAP carries start empty (each step propagates along its own direction)."""
        self.mode, self.gamma = mode, gamma
        self.carries.clear()
        self._pending.clear()

    def begin_tile(self, tile: TileState | None) -> None:
        """The next UNet call is on ``tile``; what the previous tile left for TAP becomes available."""
        self.carries.update(self._pending)
        self._pending.clear()
        self.tile = tile


def _layer_factor(tokens: int, height: int, width: int) -> tuple[int, int, int]:
    """``(f, h_l, w_l)``: the layer's downsampling factor and token grid for a tile of ``height`` x ``width`` latents."""
    f = 1
    while f <= max(height, width):
        h, w = -(-height // f), -(-width // f)
        if h * w == tokens:
            return f, h, w
        f *= 2
    raise ConfigError(f"attention layer with {tokens} tokens does not fit a {height}x{width} latent tile")


def _grid(size: int, stride: int) -> torch.Tensor:
    start = min(stride // 2, size - 1)
    return torch.arange(start, size, stride)


class PropagationAttnProcessor:
    """Spatial self-attention with SAP, TAP (on propagation layers) and DSSAG (module docstring).

    Args:
        control: the shared :class:`PropagationControl`.
        name: the layer's name (keys its SAP store and TAP carry).
        propagate: whether SAP and TAP act on this layer (DSSAG acts on every layer holding this processor).

    Inputs are those of a diffusers processor: ``hidden_states`` (rows * frames, tokens, channels) with rows the
    clips of the batch (unconditional first) and tokens the layer's ``h_l * w_l`` grid of the tile.
    """

    def __init__(self, control: PropagationControl, name: str, *, propagate: bool) -> None:
        self.control = control
        self.name = name
        self.propagate = propagate
        self._plain = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: object, **kwargs: object) -> torch.Tensor:
        ctl = self.control
        tile = ctl.tile
        sap = self.propagate and ctl.sap and ctl.mode == "sap" and tile is not None
        tap = self.propagate and ctl.tap and ctl.mode == "tap" and tile is not None
        gamma = ctl.gamma if ctl.dssag and ctl.uncond_rows > 0 else None
        plain = encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3 \
            or attn.spatial_norm is not None or attn.group_norm is not None
        if not plain and self.propagate and ctl.sap and tile is not None and not sap:
            # keep SAP's store current on the other steps too, so that a SAP step finds every frame's latest features
            self._write_store(hidden_states, self._rows(hidden_states))
        if plain or not (sap or tap or gamma is not None):
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._attend(attn, hidden_states, sap=sap, tap=tap, gamma=gamma)

    def _rows(self, hidden_states: torch.Tensor) -> int:
        """Clips in the batch: attention rows / frames per clip."""
        ctl, tile = self.control, self.control.tile
        batch = hidden_states.shape[0]
        frames = ctl.num_frames or (tile.spans[0][1] - tile.spans[0][0] if tile is not None else 0)
        if frames < 1 or batch % frames:
            raise ConfigError(f"{self.name}: {batch} attention rows do not split into clips of {frames} frames (set "
                              "PropagationControl.num_frames)")
        return batch // frames

    def _attend(self, attn: Attention, hidden_states: torch.Tensor, *, sap: bool, tap: bool,
                gamma: float | None) -> torch.Tensor:
        ctl, tile = self.control, self.control.tile
        residual = hidden_states
        batch = hidden_states.shape[0]
        heads = attn.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return rearrange(x, "b n (h d) -> b h n d", h=heads)

        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(hidden_states)), split(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        keys, values, masks = [k], [v], [None]
        rows = self._rows(hidden_states)
        frames = batch // rows
        if sap:
            extra_k, extra_v, mask = self._sap(attn, hidden_states, rows)
            keys.append(extra_k)
            values.append(extra_v)
            masks.append(mask)
        if tap:
            carried = ctl.carries.get((self.name, tile.key))
            if carried is not None:
                ck, cv = (repeat(c.to(k), "r h m d -> (r n) h m d", n=batch // rows) for c in carried)
                keys.append(ck)
                values.append(cv)
                masks.append(None)
            ctl._pending[(self.name, tile.key)] = self._carry(k, v, rows)
        if gamma is not None and gamma != 1.0:
            split_at = ctl.uncond_rows * frames
            q = torch.cat([q[:split_at] * gamma, q[split_at:]])
        mask = None
        if any(m is not None for m in masks):
            parts = [torch.ones(batch, kk.shape[2], dtype=torch.bool, device=q.device) if m is None else m
                     for kk, m in zip(keys, masks)]
            mask = torch.cat(parts, dim=1)[:, None, None, :]
        k_all = torch.cat(keys, dim=2) if len(keys) > 1 else k
        v_all = torch.cat(values, dim=2) if len(values) > 1 else v
        out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        out = rearrange(out, "b h n d -> b n (h d)").to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _carry(self, k: torch.Tensor, v: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """TAP: keys and values of the L frames (per clip) whose keys have the largest standard deviation,
        (rows, heads, L * tokens, d) on the CPU."""
        k_r = rearrange(k, "(r n) h m d -> r n (h m d)", r=rows)
        kept = min(self.control.num_frames_kept, k_r.shape[1])
        index = k_r.float().std(dim=2).topk(kept, dim=1).indices.sort(dim=1).values  # (rows, L)

        def gather(x: torch.Tensor) -> torch.Tensor:
            x = rearrange(x, "(r n) h m d -> r n h m d", r=rows)
            picked = torch.stack([x[i, index[i]] for i in range(rows)])
            return rearrange(picked, "r l h m d -> r h (l m) d").detach().cpu()

        return gather(k), gather(v)

    def _sap(self, attn: Attention, hidden_states: torch.Tensor, rows: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """SAP: write this tile's subsampled layer input into the store, read the whole frame's, project it."""
        store = self._write_store(hidden_states, rows)
        t0, t1 = self.control.tile.spans[0]
        features = rearrange(store.values[:, t0:t1], "r n y x c -> (r n) (y x) c").to(hidden_states)
        heads = attn.heads
        extra_k = rearrange(attn.to_k(features), "b m (h d) -> b h m d", h=heads)
        extra_v = rearrange(attn.to_v(features), "b m (h d) -> b h m d", h=heads)
        if attn.norm_k is not None:
            extra_k = attn.norm_k(extra_k)
        filled = store.filled[t0:t1]
        mask = None
        if not bool(filled.all()):
            mask = repeat(rearrange(filled, "n y x -> n (y x)"), "n m -> (r n) m", r=rows).to(hidden_states.device)
        return extra_k, extra_v, mask

    def _write_store(self, hidden_states: torch.Tensor, rows: int) -> _Store:
        """Write the tile's layer input at the subsampled positions it covers into SAP's frame-level store."""
        ctl, tile = self.control, self.control.tile
        (t0, t1), (y0, y1), (x0, x1) = tile.spans
        T, H, W = tile.shape
        f, hl, wl = _layer_factor(hidden_states.shape[1], y1 - y0, x1 - x0)
        store = ctl.stores.get(self.name)
        full_h, full_w = -(-H // f), -(-W // f)
        if store is None or store.values.shape[0] != rows:
            ys, xs = _grid(full_h, ctl.sap_stride), _grid(full_w, ctl.sap_stride)
            store = _Store(values=torch.zeros(rows, T, len(ys), len(xs), hidden_states.shape[2]),
                           filled=torch.zeros(T, len(ys), len(xs), dtype=torch.bool), ys=ys, xs=xs)
            ctl.stores[self.name] = store
        ty0, tx0 = min(y0 // f, full_h - hl), min(x0 // f, full_w - wl)
        gy = ((store.ys >= ty0) & (store.ys < ty0 + hl)).nonzero().flatten()
        gx = ((store.xs >= tx0) & (store.xs < tx0 + wl)).nonzero().flatten()
        if len(gy) and len(gx):
            grid = rearrange(hidden_states.detach(), "(r n) (y x) c -> r n y x c", r=rows, y=hl)
            local = grid[:, :, store.ys[gy] - ty0][:, :, :, store.xs[gx] - tx0]
            gy0, gy1, gx0, gx1 = int(gy[0]), int(gy[-1]) + 1, int(gx[0]), int(gx[-1]) + 1
            store.values[:, t0:t1, gy0:gy1, gx0:gx1] = local.to("cpu", store.values.dtype)
            store.filled[t0:t1, gy0:gy1, gx0:gx1] = True
        return store


def install_processors(unet: nn.Module, control: PropagationControl, *, layers: Sequence[str] | None = None,
                       dssag_layers: str = "all") -> dict[str, str]:
    """Install :class:`PropagationAttnProcessor` on the spatial self-attention layers of ``unet``.

    Args:
        unet: a diffusers ``UNetSpatioTemporalConditionModel``.
        control: the shared state.
        layers: the propagation layers (default :func:`propagation_layers`: first two and last two).
        dssag_layers: ``'all'`` (every spatial self-attention layer gets DSSAG) or ``'propagation'`` (the
            propagation layers only).

    Returns:
        ``{layer name: 'propagation' | 'dssag'}`` of the layers that got a processor.

    Raises:
        ConfigError: unknown ``dssag_layers``, or a layer name that is not a spatial self-attention layer.
    """
    if dssag_layers not in ("all", "propagation"):
        raise ConfigError(f"dssag_layers must be 'all' or 'propagation'; got {dssag_layers!r}")
    spatial = spatial_self_attention_layers(unet)
    chosen = list(layers) if layers is not None else propagation_layers(unet)
    unknown = sorted(set(chosen) - set(spatial))
    if unknown:
        raise ConfigError(f"not spatial self-attention layers: {unknown[:3]} (e.g. {spatial[:2]})")
    roles = {name: "propagation" if name in chosen else "dssag" for name in spatial
             if name in chosen or dssag_layers == "all"}
    set_attention_processor(unet, {f"{name}.processor": PropagationAttnProcessor(control, name,
                                                                                 propagate=role == "propagation")
                                   for name, role in roles.items()})
    return roles
