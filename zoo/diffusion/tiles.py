"""Windows and tiles: one planner and one weighted accumulator for every chunked or tiled computation of the zoo.

Used by :mod:`zoo.inference` (temporal chunks and spatial tiles of any upscaler), the diffusion samplers (temporal
windows and latent tiles blended at every denoising step, MultiDiffusion-style: Bar-Tal et al., ICML 2023) and the
chunked, tiled VAE (:mod:`zoo.diffusion.vae`).

**Planning.** :func:`plan_windows` cuts ``range(length)`` into the fewest equal windows of at most ``window`` items
that share at least ``overlap`` items with their neighbours, spread evenly; :func:`plan_tiles` is its product over
several axes (e.g. ``(t, h, w)`` spatio-temporal tiles of latents for DC-VSR's 64 x 64 x 14 tiles with 50% overlap).

**Weights** (:func:`window_weights`), per window along one axis, on the ``scale``-times larger output grid:

- ``'feather'``: 1 inside, a linear cross-fade over what a window shares with a neighbour; the quarter of the
  overlap next to a window's cut edge gets weight 0 from that window (the items it saw with the least context), so
  neighbours' weights sum to 1 and a computation whose context fits in a quarter of the overlap is reproduced exactly;
- ``'gaussian'``: ``exp(-(x - centre)^2 / (2 sigma^2))`` with ``sigma = gaussian_sigma * size`` (Mixture of
  Diffusers' tile weights; never zero, smooth everywhere);
- ``'uniform'``: all ones (a plain mean of the overlapping windows).

``floor`` raises every weight to at least that value (so every item gets some weight even where feathering gives 0).
The weights of a tile are the outer product of its per-axis weights.

**Accumulation.** :class:`TileAccumulator` keeps a weighted running mean of the pieces written into one tensor
(``acc += w / (W + w) * (piece - acc)``): where all pieces agree the result is that value bit for bit, and memory is
the output plus one weight per tiled position.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import Literal

import torch

from zoo.errors import ConfigError

__all__ = ["WEIGHT_KINDS", "TileAccumulator", "accumulate", "check_window", "latent_tile", "pad_to_multiple", "plan_tiles",
           "plan_windows", "run_over_tiles", "tile_weights", "window_weights"]

#: Names of the blending weights of :func:`window_weights`.
WEIGHT_KINDS = ("feather", "gaussian", "uniform")
WeightKind = Literal["feather", "gaussian", "uniform"]
Span = tuple[int, int]


def check_window(size: int | None, overlap: int, *, name: str = "tile", overlap_name: str | None = None) -> None:
    """Validate a window (or tile) size and its overlap.

    Args:
        size: positive integer, or None (no windowing).
        overlap: integer in ``[0, size)``.
        name: option name for the message (``'tile'``, ``'window'``, ``'chunk_frames'``).
        overlap_name: name of the overlap option (default ``<name>_overlap``).

    Raises:
        ConfigError: naming the option and its value.
    """
    overlap_name = overlap_name or f"{name}_overlap"
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{name} must be a positive integer or None, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ConfigError(f"{overlap_name} must be a non-negative integer, got {overlap!r}")
    if overlap >= size:
        raise ConfigError(f"{overlap_name}={overlap} must be smaller than {name}={size}")


def plan_windows(length: int, window: int | None, overlap: int, *, exact: bool = False) -> list[Span]:
    """Equal overlapping windows ``[start, end)`` covering ``range(length)``.

    Uses the fewest windows of at most ``window`` items that share at least ``overlap`` items with their
    neighbours: ``n = ceil((length - overlap) / (window - overlap))`` windows of the same size
    ``ceil((length - overlap) / n) + overlap`` spread evenly, so neighbours share ``overlap`` to ``overlap + 2``
    items. (Equal sizes give every chunk the same context, and no window shares much more than ``overlap`` items,
    which keeps the items waiting to be blended few.) One window ``(0, length)`` when ``window`` is None or covers
    it all.

    With ``exact``, every window has exactly ``window`` items (when ``length >= window``): the same number of windows,
    spread evenly from 0 to ``length - window``, so neighbours share at least ``overlap`` items (a network trained on
    that size sees it; DC-VSR's 64 x 64 x 14 latent tiles).

    Args:
        length: items to cover (>= 1).
        window: largest window, or None.
        overlap: smallest overlap of neighbours (``0 <= overlap < window``).
        exact: windows of exactly ``window`` items.

    Returns:
        ``[(start, end), ...]`` in increasing order, first start 0, last end ``length``.
    """
    if window is None or window >= length:
        return [(0, length)]
    count = math.ceil((length - overlap) / (window - overlap))
    size = window if exact else math.ceil((length - overlap) / count) + overlap
    starts = [(k * (length - size)) // (count - 1) for k in range(count)]
    return [(start, start + size) for start in starts]


def plan_tiles(shape: Sequence[int], size: Sequence[int | None], overlap: Sequence[int], *, exact: bool = False
               ) -> list[tuple[tuple[int, ...], tuple[Span, ...]]]:
    """Tiles over several axes: the product of :func:`plan_windows` along each.

    Args:
        shape: extent of each tiled axis, e.g. ``(t, h, w)``.
        size: largest tile along each axis (None: the whole axis).
        overlap: smallest overlap along each axis.
        exact: tiles of exactly ``size`` along each axis that is longer (:func:`plan_windows`).

    Returns:
        ``[(index, spans), ...]``: ``index`` the tile's position in each axis' plan, ``spans`` its ``(start, end)``
        per axis; row-major order (last axis fastest).

    Raises:
        ConfigError: bad sizes or overlaps, or sequences of different lengths.
    """
    if not len(shape) == len(size) == len(overlap):
        raise ConfigError(f"plan_tiles: shape {tuple(shape)}, size {tuple(size)} and overlap {tuple(overlap)} "
                          "must have one entry per axis")
    for axis, (s, o) in enumerate(zip(size, overlap)):
        check_window(s, o, name=f"tile size of axis {axis}", overlap_name=f"overlap of axis {axis}")
    plans = [plan_windows(n, s, o, exact=exact) for n, s, o in zip(shape, size, overlap)]
    return [(index, tuple(plan[i] for plan, i in zip(plans, index)))
            for index in product(*(range(len(plan)) for plan in plans))]


def _fade_in(shared: int) -> torch.Tensor:
    """Weights of the later of two windows over the ``shared`` items they have in common (earlier: flipped).

    The quarter of the overlap next to each window's cut edge goes entirely to the other window (weight 0), the
    middle half is a linear cross-fade ``(j + 1) / (K + 1)``.
    """
    margin = shared // 4
    ramp = shared - 2 * margin
    return torch.cat([torch.zeros(margin), torch.arange(1, ramp + 1) / (ramp + 1), torch.ones(margin)])


def window_weights(plan: Sequence[Span], index: int, scale: int = 1, *, kind: WeightKind = "feather",
                   floor: float = 0.0, gaussian_sigma: float = 0.1) -> torch.Tensor:
    """Blending weights of window ``index`` of ``plan``, on the ``scale``-times larger output grid.

    Args:
        plan: windows from :func:`plan_windows`.
        index: which window.
        scale: output items per planned item (e.g. the SR factor for tiles planned in LQ pixels).
        kind: ``'feather'``, ``'gaussian'`` or ``'uniform'`` (module docstring).
        floor: lower bound of every weight (0: none).
        gaussian_sigma: ``sigma`` of the Gaussian as a fraction of the window size.

    Returns:
        ``((end - start) * scale,)`` float32 weights. Feather: consecutive windows' weights sum to 1 on what they
        share, 1 elsewhere (and at the ends of the whole range). A single window gets all ones for every kind.

    Raises:
        ConfigError: unknown ``kind``.
    """
    if kind not in WEIGHT_KINDS:
        raise ConfigError(f"blend weights must be one of {WEIGHT_KINDS}, got {kind!r}")
    start, end = plan[index]
    n = (end - start) * scale
    if kind == "uniform" or len(plan) == 1:
        weights = torch.ones(n)
    elif kind == "gaussian":
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        weights = torch.exp(-(x**2) / (2 * (gaussian_sigma * n) ** 2)).float()
    else:
        weights = torch.ones(n)
        shared_before = (plan[index - 1][1] - start) * scale if index > 0 else 0
        shared_after = (end - plan[index + 1][0]) * scale if index + 1 < len(plan) else 0
        if shared_before:
            weights[:shared_before] = _fade_in(shared_before)
        if shared_after:
            weights[-shared_after:] = torch.minimum(weights[-shared_after:], _fade_in(shared_after).flip(0))
    return weights.clamp_min(floor) if floor > 0 else weights


def tile_weights(plans: Sequence[Sequence[Span]], index: Sequence[int], scale: Sequence[int] | int = 1, *,
                 kind: WeightKind = "feather", floor: float = 0.0, gaussian_sigma: float = 0.1
                 ) -> list[torch.Tensor]:
    """Per-axis :func:`window_weights` of one tile of :func:`plan_tiles` (their outer product is its weight).

    Args:
        plans: the per-axis plans.
        index: the tile's index per axis.
        scale: output items per planned item, per axis or one for all.
        kind, floor, gaussian_sigma: as :func:`window_weights` (``floor`` applies to each axis' weights).

    Returns:
        One 1-D weight tensor per axis.
    """
    scales = [scale] * len(plans) if isinstance(scale, int) else list(scale)
    return [window_weights(plan, i, s, kind=kind, floor=floor, gaussian_sigma=gaussian_sigma)
            for plan, i, s in zip(plans, index, scales)]


def accumulate(acc: torch.Tensor, weight_sum: torch.Tensor, piece: torch.Tensor, weight: torch.Tensor) -> None:
    """In place: ``acc`` becomes the running mean of what was blended into it, weighted by ``weight``.

    ``weight_sum += weight``; ``acc += weight / weight_sum * (piece - acc)`` (0 where ``weight_sum`` is 0). ``weight``
    and ``weight_sum`` broadcast to ``acc``; the first piece with positive weight is copied exactly (ratio 1).
    """
    weight_sum += weight
    ratio = torch.where(weight_sum > 0, weight / weight_sum, torch.zeros_like(weight_sum))
    acc += ratio * (piece - acc)


class TileAccumulator:
    """The weighted running mean of overlapping pieces of one tensor.

    ``acc += w / (W + w) * (piece - acc)`` with ``W`` the weight already there: the first piece with positive weight
    is copied exactly, and pieces equal to the value already there leave it unchanged (so a blend of identical
    predictions is bit-exact). Positions that no piece covers with positive weight stay 0.

    Args:
        shape: the whole tensor, e.g. ``(b, t, c, H, W)``.
        axes: the axes pieces are tiled along, e.g. ``(1, 3, 4)`` for (t, H, W); the weights are kept for those
            axes only.
        dtype, device: of the accumulated tensor (default float32 on the CPU: clip-level state stays off the
            accelerator).
    """

    def __init__(self, shape: Sequence[int], axes: Sequence[int], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.axes = tuple(a % len(shape) for a in axes)
        self.value = torch.zeros(tuple(shape), dtype=dtype, device=device)
        self.weight_sum = torch.zeros([n if a in self.axes else 1 for a, n in enumerate(shape)], dtype=dtype,
                                      device=device)

    def add(self, spans: Sequence[Span], piece: torch.Tensor, weights: Sequence[torch.Tensor], *,
            floor: float = 0.0) -> None:
        """Blend ``piece`` into the region ``spans`` (one ``(start, end)`` per tiled axis).

        Args:
            spans: the region along each of ``axes``.
            piece: the values there (the full extent on the other axes); moved to the accumulator's device/dtype.
            weights: one 1-D tensor per tiled axis (length of its span), e.g. from :func:`tile_weights`; the piece's
                weight is their outer product.
            floor: lower bound of that product (0: none).

        Raises:
            ConfigError: a piece or weights whose shape does not fit the region.
        """
        index = [slice(None)] * self.value.ndim
        weight = torch.ones((), dtype=self.value.dtype, device=self.value.device)
        for axis, (start, end), w in zip(self.axes, spans, weights):
            index[axis] = slice(start, end)
            if w.numel() != end - start:
                raise ConfigError(f"weights of axis {axis} have {w.numel()} entries for a span of {end - start}")
            view = [1] * self.value.ndim
            view[axis] = end - start
            weight = weight * w.to(self.value).reshape(view)
        if floor > 0:
            weight = weight.clamp_min(floor)
        region = self.value[tuple(index)]
        if tuple(piece.shape) != tuple(region.shape):
            raise ConfigError(f"piece of shape {tuple(piece.shape)} does not fit region {tuple(region.shape)}")
        accumulate(region, self.weight_sum[tuple(index)], piece.to(region), weight)

    def result(self) -> torch.Tensor:
        """The blended tensor (the accumulator's own storage)."""
        return self.value


def run_over_tiles(
    fn: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    scale: int,
    tile: int | None,
    tile_overlap: int,
    factor: int = 1,
    context: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    floor: float = 0.0,
    out_channels: int | None = None,
    out_device: torch.device | str = "cpu",
    **kwargs: object,
) -> torch.Tensor:
    """``fn`` over overlapping square spatial tiles of a clip, feather-blended into one float32 tensor (on the CPU by
    default).

    The tiles are planned (:func:`plan_windows`) on a grid ``factor`` times coarser than ``x`` (e.g. the latent grid
    of an encoder's input frames; 1 for an upscaler's LQ input) with ``tile`` / ``tile_overlap`` counted on that grid.
    Each piece ``x[..., y0 f : y1 f, x0 f : x1 f]`` (and the same region of every ``context`` tensor) is moved to
    ``device`` (and ``dtype``), and ``fn(piece, **context_pieces, **kwargs)`` must return
    ``(b, n, c', (y1 - y0) scale, (x1 - x0) scale)``; the outputs are blended on the output grid with
    :func:`window_weights` (``floor`` bounds each piece's weight from below). A single tile is returned as it is.

    Args:
        fn: the computation (e.g. an upscaler, a VAE decoder or encoder).
        x: (b, n, c, H, W), H and W multiples of ``factor``.
        scale: output pixels per grid cell.
        tile, tile_overlap: tile side and overlap in grid cells (None: whole frames).
        factor: input pixels per grid cell.
        context: tensors laid out like ``x`` (same H, W) cut with it.
        device, dtype: where (and in which dtype; None: unchanged) ``fn`` gets its input.
        floor: lowest blending weight.
        out_channels: the channels ``fn`` must return (None: any).
        out_device: where the outputs are blended and returned (default the CPU; ``device`` keeps them on the
            accelerator, e.g. for :func:`zoo.inference.upscale_video`, which blends and rounds them there).
        **kwargs: passed to ``fn`` unchanged.

    Returns:
        (b, n, c', (H / factor) scale, (W / factor) scale) float32 on ``out_device``.

    Raises:
        ConfigError: bad tile options, or ``fn`` returning another shape (the message asks whether ``scale`` is
            right).
    """
    check_window(tile, tile_overlap, name="tile")
    b, n, _, height, width = x.shape
    h, w = height // factor, width // factor
    rows, cols = plan_windows(h, tile, tile_overlap), plan_windows(w, tile, tile_overlap)
    context = dict(context or {})
    blend: TileAccumulator | None = None
    for r, (y0, y1) in enumerate(rows):
        for c, (x0, x1) in enumerate(cols):
            region = (..., slice(y0 * factor, y1 * factor), slice(x0 * factor, x1 * factor))
            piece = x[region].to(device=device, dtype=dtype)
            out = fn(piece, **{k: v[region].to(device=device, dtype=dtype) for k, v in context.items()}, **kwargs)
            want = (b, n, out_channels, (y1 - y0) * scale, (x1 - x0) * scale)
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            if not isinstance(out, torch.Tensor) or out.ndim != 5 or any(
                    g != e for g, e in zip(out.shape, want) if e is not None):
                raise ConfigError(f"the network mapped {tuple(piece.shape)} to {got}, expected "
                                  f"{tuple('c' if e is None else e for e in want)}; is scale={scale} right?")
            out = out.detach().to(out_device, torch.float32)
            if len(rows) == 1 and len(cols) == 1:
                return out
            if blend is None:
                blend = TileAccumulator((b, n, out.shape[2], h * scale, w * scale), axes=(3, 4), device=out_device)
            spans = ((y0 * scale, y1 * scale), (x0 * scale, x1 * scale))
            blend.add(spans, out, (window_weights(rows, r, scale), window_weights(cols, c, scale)), floor=floor)
    return blend.result()


def latent_tile(tile: int | None, tile_overlap: int, *, scale: int, vae_factor: int) -> tuple[int | None, int]:
    """A tile given in LQ pixels as latent pixels: ``round(tile * scale / vae_factor)`` (at least 1) and its overlap
    (at most the tile minus 1); ``(None, 0)`` for no tiles. E.g. 128 LQ px x4 / 8 = 64 latents."""
    if tile is None:
        return None, 0
    ratio = scale / vae_factor
    size = max(1, int(round(tile * ratio)))
    return size, min(size - 1, int(round(tile_overlap * ratio)))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad a clip (b, t, c, h, w) on the bottom and right by replicating its edge pixels so that h and w are
    multiples of ``multiple`` (unchanged when they are); crop ``[..., :h, :w]`` to undo."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    if not (ph or pw):
        return x
    b = x.shape[0]
    padded = torch.nn.functional.pad(x.flatten(0, 1), (0, pw, 0, ph), mode="replicate")
    return padded.unflatten(0, (b, x.shape[1]))
