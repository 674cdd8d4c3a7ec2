"""Benchmark suites: which entries (upscalers) run on which evaluation sets, read from a YAML file.

A suite file (``configs/benchmarks/<suite>.yaml``) has four sections::

    name: vid4                       # results go to <output_dir>/<name>.csv and .md (default: the file's stem)
    title: Vid4 crops, CPU           # heading of the markdown leaderboard
    description: ...                 # free text printed under the heading (say how the sets were cut down)
    scale: 4
    cache_dir: .cache/benchmark_lq   # cached LQ frames (relative paths: from the current directory)
    metrics: {crop_border: 4, y_channel: true, lpips: true, warping_error: true, ewarp_flow_from: gt,
              flow: auto, tof: true, tlpips: true, niqe: true}
    sets:
      - name: vid4_bi
        protocol: bicubic            # bicubic (BI) | realbasicvsr (seeded, cached) | lq (real LQ clips, no GT)
        paths: [${shared_data}/vid4_calendar, ...]
        num_frames: 20               # first frames of every clip (null: all)
        max_size: 384                # centre crop: GT side (bicubic/realbasicvsr) or LQ side (lq); null: whole frames
        seed: 0                      # realbasicvsr only
    entries:
      - name: bicubic                # always present: added first when missing
        family: bicubic
      - name: realbasicvsr_cpu
        family: realbasicvsr         # a zoo.hub family, loaded with zoo.hub.load_pretrained(family, weights, **options)
        weights: checkpoints/realbasicvsr_cpu_stage1.ckpt
        label: RealBasicVSR, our CPU-trained stage-1 checkpoint
        options: {dynamic_refine_thres: 5}
        chunk_frames: null           # zoo.inference.upscale_tensor options
        overlap: 0
        tile: null
        tile_overlap: 0
        dtype: fp32                  # fp32 | bf16 | fp16 (CUDA only)
      - name: realbasicvsr_tiny_random
        family: realbasicvsr
        weights: random              # explicitly random weights (timing, wiring): the family's own networks,
        variant: tiny                # of a named size (or `net: {class_path: zoo...., init_args: {...}}`)

Strings may use the placeholders ``${shared_data}`` (:func:`zoo.testing.shared_data_dir`), ``${sample}``
(:func:`zoo.testing.sample_clip_dir`) and ``${suite_dir}`` (the suite file's folder). A set whose
``${shared_data}`` is absent, or whose paths do not exist, is skipped with a note in the leaderboard, as is an
entry whose weights file is missing: a suite never fails for lack of optional data.

The schema is plain frozen dataclasses (:class:`Suite`, :class:`EvalSet`, :class:`Entry`, :class:`MetricOptions`);
unknown keys, wrong types and duplicate names raise :class:`zoo.errors.ConfigError` naming the file and key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ConfigError

__all__ = ["BICUBIC", "DTYPES", "PROTOCOLS", "Entry", "EvalSet", "MetricOptions", "Suite", "expand_placeholders",
           "load_suite"]

#: How the LQ clips of a set are made: bicubic x1/scale of the GT (BI), the seeded Real-ESRGAN degradation of
#: the GT, or read as they are (real low-quality clips without GT).
PROTOCOLS = ("bicubic", "realbasicvsr", "lq")
#: Inference precisions of an entry (``zoo.inference`` names).
DTYPES = ("fp32", "bf16", "fp16")
#: Family name of the weight-free bicubic baseline.
BICUBIC = "bicubic"
#: Value of ``weights`` that asks for randomly initialised weights.
RANDOM_WEIGHTS = "random"

_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True)
class MetricOptions:
    """Which metrics the leaderboard computes and with which conventions (see :class:`zoo.metrics.VideoMetrics`).

    Attributes:
        crop_border: pixels removed on each side before PSNR/SSIM/E*warp/tOF/NIQE (VSR convention: the scale).
        y_channel: PSNR/SSIM on the BT.601 Y channel (the VSR convention) instead of RGB.
        lpips: LPIPS (AlexNet), when its backbone weights are present locally.
        warping_error: E*warp (Lai et al. 2018), reported x1e3.
        ewarp_flow_from: ``'gt'``: flow and occlusion mask from the GT clip when the set has one (the same motion
            for every entry), else from the SR clip; ``'sr'``: always from the SR clip.
        flow: E*warp flow estimator: ``'auto'`` (RAFT when its weights are present and frames are at least 128 px,
            else DIS), ``'raft'``, ``'dis'``, ``'farneback'``. The column names the source and the estimator used
            (``ewarp_gt_raft``, ``ewarp_sr_dis``, ...).
        tof: tOF (TecoGAN) on sets with GT.
        tlpips: tLPIPS (TecoGAN) on sets with GT, when LPIPS is available.
        niqe: NIQE on LQ-only sets (no-reference).
    """

    crop_border: int = 4
    y_channel: bool = True
    lpips: bool = True
    warping_error: bool = True
    ewarp_flow_from: str = "gt"
    flow: str = "auto"
    tof: bool = True
    tlpips: bool = True
    niqe: bool = True


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: clips plus the protocol that makes their LQ frames.

    Attributes:
        name: unique name (file names, table headings).
        protocol: one of :data:`PROTOCOLS`.
        paths: clip paths (folders of frames, video files, or folders of those), placeholders expanded.
        num_frames: use the first ``num_frames`` frames of each clip (None: all).
        max_size: centre crop, at most this many pixels per side: of the GT for ``bicubic``/``realbasicvsr``
            (a multiple of the scale), of the LQ for ``lq``. None: whole frames.
        seed: base seed of the ``realbasicvsr`` LQ (per clip ``stable_seed(seed, key)``, as the datamodule).
        description: free text for the leaderboard.
        missing: why the set cannot run (unexpanded placeholder or missing path); empty when it can.
    """

    name: str
    protocol: str
    paths: tuple[str, ...]
    num_frames: int | None = None
    max_size: int | None = None
    seed: int = 0
    description: str = ""
    missing: str = ""

    @property
    def has_gt(self) -> bool:
        """True for synthetic sets (``bicubic``, ``realbasicvsr``), False for LQ-only ``lq`` sets."""
        return self.protocol != "lq"


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: an upscaler and its inference options.

    Attributes:
        name: unique name (CSV key, ``--entries`` filter).
        family: ``'bicubic'`` or a :func:`zoo.hub.available_families` name (ignored for random weights with ``net``).
        weights: path of the weights file or folder (placeholders expanded; relative to the current directory), the
            string ``'random'`` (random initialisation, labelled as such), or None (bicubic).
        net: ``{'class_path': 'zoo....', 'init_args': {...}}`` of the net to build for ``weights: random``; without
            it the family builds its own random networks, ``zoo.hub.load_pretrained(family, None, variant=variant,
            **options)``.
        variant: with ``weights: random`` and no ``net``: a named configuration of the family (e.g. ``'tiny'``; the
            family's ``variants`` in its ``spec.py``); None: full size.
        options: keyword overrides of :func:`zoo.hub.load_pretrained` (e.g. ``dynamic_refine_thres``).
        label: human description for the leaderboard (say where the weights come from).
        weights_from: how the weights were made, for files that do not record it (official releases, files made
            elsewhere): e.g. ``"official release (authors' training on REDS)"``. Checkpoints written by the zoo's
            systems carry their training command and commit (``checkpoint['vsrzoo']['made_by']``), which the
            leaderboard prints instead.
        chunk_frames, overlap, tile, tile_overlap: :func:`zoo.inference.upscale_tensor` options.
        dtype: one of :data:`DTYPES`.
    """

    name: str
    family: str = BICUBIC
    weights: str | None = None
    net: Mapping[str, Any] | None = None
    variant: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    weights_from: str = ""
    chunk_frames: int | None = None
    overlap: int = 0
    tile: int | None = None
    tile_overlap: int = 0
    dtype: str = "fp32"

    @property
    def is_bicubic(self) -> bool:
        """True for the weight-free bicubic baseline."""
        return self.family == BICUBIC and self.weights is None and self.net is None

    @property
    def is_random(self) -> bool:
        """True when the entry asks for randomly initialised weights."""
        return self.weights == RANDOM_WEIGHTS

    def describe_weights(self) -> str:
        """Short text for the table's weights column: ``'none'``, ``'random (not trained)'`` or the file name."""
        if self.is_bicubic:
            return "none"
        if self.is_random:
            return "random (not trained)"
        return Path(str(self.weights)).name


@dataclass(frozen=True)
class Suite:
    """A parsed benchmark suite (see the module docstring for the YAML layout).

    Attributes:
        name: results file stem.
        title: markdown heading.
        description: free text.
        scale: upscaling factor of every entry.
        cache_dir: folder of cached LQ frames.
        metrics: metric options.
        sets: evaluation sets, in order.
        entries: entries, the bicubic baseline first.
        path: the YAML file it was read from (None when built in Python).
        sha256: SHA-256 of that file's bytes (empty when built in Python).
    """

    name: str
    sets: tuple[EvalSet, ...]
    entries: tuple[Entry, ...]
    title: str = ""
    description: str = ""
    scale: int = 4
    cache_dir: str = ".cache/benchmark_lq"
    metrics: MetricOptions = field(default_factory=MetricOptions)
    path: Path | None = None
    sha256: str = ""

    def __post_init__(self) -> None:
        _check_unique([s.name for s in self.sets], "sets", self.path)
        _check_unique([e.name for e in self.entries], "entries", self.path)
        if not any(e.is_bicubic for e in self.entries):
            object.__setattr__(self, "entries", (Entry(name=BICUBIC, label="bicubic x4 upsampling (baseline)"),
                                                 *self.entries))

    def entry(self, name: str) -> Entry:
        """The entry called ``name``. Raises ConfigError when absent."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise ConfigError(f"suite {self.name!r} has no entry {name!r}; entries: {[e.name for e in self.entries]}")

    def eval_set(self, name: str) -> EvalSet:
        """The set called ``name``. Raises ConfigError when absent."""
        for eval_set in self.sets:
            if eval_set.name == name:
                return eval_set
        raise ConfigError(f"suite {self.name!r} has no set {name!r}; sets: {[s.name for s in self.sets]}")

    def select(self, *, entries: Sequence[str] | None = None, sets: Sequence[str] | None = None) -> Suite:
        """A copy restricted to the named entries and/or sets (the bicubic baseline always stays).

        Raises:
            ConfigError: for a name that is not in the suite.
        """
        new_entries, new_sets = self.entries, self.sets
        if entries is not None:
            wanted = [self.entry(name) for name in entries]  # raises for unknown names
            new_entries = tuple(e for e in self.entries if e.is_bicubic or e in wanted)
        if sets is not None:
            wanted_sets = [self.eval_set(name) for name in sets]
            new_sets = tuple(s for s in self.sets if s in wanted_sets)
        return dataclasses.replace(self, entries=new_entries, sets=new_sets)


def _check_unique(names: list[str], what: str, path: Path | None) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{path or 'suite'}: two {what} are named {name!r}")
        seen.add(name)


def expand_placeholders(text: str, *, suite_dir: Path | None) -> tuple[str, str]:
    """Replace ``${shared_data}``, ``${sample}`` and ``${suite_dir}`` in ``text``.

    Returns:
        ``(expanded, missing)``: ``missing`` names a placeholder that could not be expanded (the shared data
        folder is absent), else empty; the placeholder then stays in ``expanded``.

    Raises:
        ConfigError: for an unknown placeholder.
    """
    from zoo.testing import sample_clip_dir, shared_data_dir

    missing = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name == "shared_data":
            value = shared_data_dir()
            if value is None:
                missing.append("the shared data folder (../shared/data or $VSRZOO_SHARED_DATA) is absent")
                return match.group(0)
            return str(value)
        if name == "sample":
            return str(sample_clip_dir())
        if name == "suite_dir":
            if suite_dir is None:
                raise ConfigError("${suite_dir} used in a suite that was not read from a file")
            return str(suite_dir)
        raise ConfigError(f"unknown placeholder ${{{name}}} in {text!r}; known: shared_data, sample, suite_dir")

    return _PLACEHOLDER.sub(replace, text), "; ".join(missing)


# ------------------------------------------------------------------------------------------------------------ parsing
def _take(data: Mapping, cls: type, where: str) -> dict[str, Any]:
    """Check ``data`` is a mapping whose keys are fields of ``cls``; return it as a dict."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    known = {f.name for f in dataclasses.fields(cls)} - {"missing", "path", "sha256"}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return dict(data)


def _typed(value: Any, kinds: tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds:  # True is an int in Python: refuse it for numbers
        raise ConfigError(f"{where}: expected {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}: expected {'/'.join(k.__name__ for k in kinds)}"
                          f"{' or null' if optional else ''}, got {type(value).__name__} {value!r}")
    return value


def _positive(value: Any, where: str, *, optional: bool = True) -> int | None:
    value = _typed(value, (int,), where, optional=optional)
    if value is not None and value < 1:
        raise ConfigError(f"{where}: must be a positive integer, got {value}")
    return value


def _parse_metrics(data: Any, where: str) -> MetricOptions:
    raw = _take(data or {}, MetricOptions, where)
    for key, value in raw.items():
        expected = (int,) if key == "crop_border" else (str,) if key in ("flow", "ewarp_flow_from") else (bool,)
        _typed(value, expected, f"{where}.{key}")
    options = MetricOptions(**raw)
    if options.crop_border < 0:
        raise ConfigError(f"{where}.crop_border must be >= 0, got {options.crop_border}")
    if options.ewarp_flow_from not in ("gt", "sr"):
        raise ConfigError(f"{where}.ewarp_flow_from must be 'gt' or 'sr', got {options.ewarp_flow_from!r}")
    if options.flow not in ("auto", "dis", "farneback", "raft"):
        raise ConfigError(f"{where}.flow must be 'auto', 'dis', 'farneback' or 'raft', got {options.flow!r}")
    return options


def _parse_set(data: Any, where: str, scale: int, suite_dir: Path | None) -> EvalSet:
    raw = _take(data, EvalSet, where)
    for key in ("name", "protocol", "paths"):
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    name = _typed(raw["name"], (str,), f"{where}.name")
    protocol = _typed(raw["protocol"], (str,), f"{where}.protocol")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol must be one of {PROTOCOLS}, got {protocol!r}")
    paths = raw["paths"]
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, Sequence) or not paths:
        raise ConfigError(f"{where}.paths must be a non-empty list of clip paths, got {paths!r}")
    expanded, missing = [], []
    for index, text in enumerate(paths):
        value, why = expand_placeholders(_typed(text, (str,), f"{where}.paths[{index}]"), suite_dir=suite_dir)
        expanded.append(value)
        if why:
            missing.append(why)
        elif not Path(value).expanduser().exists():
            missing.append(f"{value} does not exist")
    max_size = _positive(raw.get("max_size"), f"{where}.max_size")
    if max_size is not None and protocol != "lq" and max_size % scale:
        raise ConfigError(f"{where}.max_size {max_size} (a GT size) must be a multiple of the scale {scale}")
    return EvalSet(name=name, protocol=protocol, paths=tuple(expanded),
                   num_frames=_positive(raw.get("num_frames"), f"{where}.num_frames"), max_size=max_size,
                   seed=_typed(raw.get("seed", 0), (int,), f"{where}.seed"),
                   description=_typed(raw.get("description", ""), (str,), f"{where}.description"),
                   missing="; ".join(dict.fromkeys(missing)))


def _parse_entry(data: Any, where: str, suite_dir: Path | None) -> Entry:
    raw = _take(data, Entry, where)
    if "name" not in raw:
        raise ConfigError(f"{where}: missing key 'name'")
    name = _typed(raw["name"], (str,), f"{where}.name")
    family = _typed(raw.get("family", BICUBIC if raw.get("weights") is None else ""), (str,), f"{where}.family")
    weights = _typed(raw.get("weights"), (str,), f"{where}.weights", optional=True)
    if weights is not None and weights != RANDOM_WEIGHTS:
        weights, _ = expand_placeholders(weights, suite_dir=suite_dir)
    net = raw.get("net")
    if net is not None:
        net = _typed(net, (Mapping,), f"{where}.net")
        if "class_path" not in net or set(net) - {"class_path", "init_args"}:
            raise ConfigError(f"{where}.net must be {{class_path: zoo...., init_args: {{...}}}}, got {dict(net)!r}")
        if weights != RANDOM_WEIGHTS:
            raise ConfigError(f"{where}: 'net' is only used with 'weights: random' (trained weights are loaded "
                              f"through zoo.hub.load_pretrained(family, weights))")
    if weights == RANDOM_WEIGHTS and net is None and family in ("", BICUBIC):
        raise ConfigError(f"{where}: 'weights: random' needs a model 'family' (whose random networks zoo.hub builds, "
                          f"optionally a 'variant' of it) or 'net: {{class_path: ..., init_args: {{...}}}}'")
    variant = _typed(raw.get("variant"), (str,), f"{where}.variant", optional=True)
    if variant is not None and (weights != RANDOM_WEIGHTS or net is not None):
        raise ConfigError(f"{where}: 'variant' sizes the family's random networks: use it with 'weights: random' "
                          "and without 'net'")
    if weights is None and net is None and family != BICUBIC:
        raise ConfigError(f"{where}: family {family!r} needs 'weights' (a file, or 'random' with 'net')")
    if weights is not None and weights != RANDOM_WEIGHTS and family in ("", BICUBIC):
        raise ConfigError(f"{where}: 'weights' given without a model 'family' (see zoo.hub.available_families())")
    dtype = _typed(raw.get("dtype", "fp32"), (str,), f"{where}.dtype")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}.dtype must be one of {DTYPES}, got {dtype!r}")
    chunk_frames = _positive(raw.get("chunk_frames"), f"{where}.chunk_frames")
    tile = _positive(raw.get("tile"), f"{where}.tile")
    overlap = _typed(raw.get("overlap", 0), (int,), f"{where}.overlap")
    tile_overlap = _typed(raw.get("tile_overlap", 0), (int,), f"{where}.tile_overlap")
    if chunk_frames is not None and not 0 <= overlap < chunk_frames:
        raise ConfigError(f"{where}.overlap={overlap} must be in [0, chunk_frames={chunk_frames})")
    if tile is not None and not 0 <= tile_overlap < tile:
        raise ConfigError(f"{where}.tile_overlap={tile_overlap} must be in [0, tile={tile})")
    options = _typed(raw.get("options") or {}, (Mapping,), f"{where}.options")
    label = _typed(raw.get("label", ""), (str,), f"{where}.label")
    weights_from = _typed(raw.get("weights_from", ""), (str,), f"{where}.weights_from")
    if not family and net is not None:  # zoo.models.<family>.net.Class -> <family>
        parts = str(net["class_path"]).split(".")
        family = parts[2] if len(parts) > 3 and parts[:2] == ["zoo", "models"] else parts[-1]
    return Entry(name=name, family=family or "custom", weights=weights, net=net, variant=variant,
                 options=dict(options), label=label, weights_from=weights_from, chunk_frames=chunk_frames,
                 overlap=overlap, tile=tile, tile_overlap=tile_overlap, dtype=dtype)


def parse_suite(data: Mapping[str, Any], *, name: str, path: Path | None = None, sha256: str = "") -> Suite:
    """Build a :class:`Suite` from an already loaded YAML mapping.

    Args:
        data: the mapping (see the module docstring).
        name: default name (the file's stem) when ``data`` has none.
        path: the file it came from (placeholder ``${suite_dir}``, messages).
        sha256: the file's hash, recorded in the leaderboard.

    Raises:
        ConfigError: unknown keys, wrong types, bad values, duplicate names, no set or no entry.
    """
    where = str(path or "suite")
    raw = _take(data, Suite, where)
    suite_dir = path.parent.resolve() if path is not None else None
    scale = _positive(raw.get("scale", 4), f"{where}.scale", optional=False)
    sets = raw.get("sets")
    if not isinstance(sets, Sequence) or isinstance(sets, str) or not sets:
        raise ConfigError(f"{where}: 'sets' must be a non-empty list")
    entries = raw.get("entries") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ConfigError(f"{where}: 'entries' must be a list")
    cache_dir, why = expand_placeholders(_typed(raw.get("cache_dir", ".cache/benchmark_lq"), (str,),
                                                f"{where}.cache_dir"), suite_dir=suite_dir)
    if why:
        raise ConfigError(f"{where}.cache_dir: {why}")
    return Suite(
        name=_typed(raw.get("name", name), (str,), f"{where}.name"),
        title=_typed(raw.get("title", ""), (str,), f"{where}.title"),
        description=_typed(raw.get("description", ""), (str,), f"{where}.description"),
        scale=scale,
        cache_dir=cache_dir,
        metrics=_parse_metrics(raw.get("metrics"), f"{where}.metrics"),
        sets=tuple(_parse_set(s, f"{where}.sets[{i}]", scale, suite_dir) for i, s in enumerate(sets)),
        entries=tuple(_parse_entry(e, f"{where}.entries[{i}]", suite_dir) for i, e in enumerate(entries)),
        path=path,
        sha256=sha256,
    )


def load_suite(path: str | Path) -> Suite:
    """Read a suite YAML file.

    Args:
        path: ``configs/benchmarks/<suite>.yaml``.

    Returns:
        The :class:`Suite` (name defaults to the file's stem; bicubic baseline added when missing).

    Raises:
        ConfigError: missing or unreadable file, invalid YAML, or an invalid suite (see :func:`parse_suite`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark suite file not found: {path}")
    content = path.read_bytes()
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_suite(data, name=path.stem, path=path, sha256=hashlib.sha256(content).hexdigest())
