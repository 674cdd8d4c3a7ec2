"""Weights on disk: safe checkpoint reading, exact key/shape checks, declarative key maps, Lightning checkpoints.

A leaf module (it imports only torch and :mod:`zoo.errors`): every family's ``convert.py``, the shared
latent-diffusion layer and :mod:`zoo.hub` use it, and it uses none of them.

- :func:`read_checkpoint`: ``torch.load`` on the CPU, ``weights_only=True`` first; with ``family``, a vsrzoo checkpoint
  of another family is refused in one line (:func:`check_family`).
- :func:`check_state_dict` / :func:`load_state`: a state dict must have exactly the target's keys and shapes;
  ``allow_missing`` names the keys that may be absent (new layers of an inflated network, frozen parts that a
  checkpoint does not carry).
- :class:`KeyMap`: ordered regex rules from an official key layout to ours, with dropped keys; applied with
  collision and coverage checks.
- :func:`is_lightning_checkpoint`, :func:`lightning_generator_state`, :func:`net_kwargs_from_hparams`,
  :func:`hparams_of`: this project's Lightning checkpoints (generator under ``net_g.*`` / ``net_g_ema.*``,
  constructor arguments in ``hyper_parameters``).
"""
from __future__ import annotations

import inspect
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError

__all__ = ["CHECKPOINT_INFO", "LIGHTNING_EMA_PREFIX", "LIGHTNING_PREFIX", "KeyMap", "check_state_dict", "checkpoint_info", "hparams_of",
           "check_family", "is_lightning_checkpoint", "lightning_generator_state", "load_state", "net_kwargs_from_hparams",
           "refuse_recorded",
           "plain", "read_checkpoint", "tensor_state"]

#: Key of the vsrzoo section of this project's Lightning checkpoints: ``{'family': name, 'weights': 'trained' | 'all',
#: 'pretrained': folder or None}`` (``'trained'``: only the trained layers are stored, the frozen ones come from
#: ``pretrained``).
CHECKPOINT_INFO = "vsrzoo"
#: Prefixes of the generator weights in this project's Lightning checkpoints (EMA first).
LIGHTNING_EMA_PREFIX = "net_g_ema."
LIGHTNING_PREFIX = "net_g."


def read_checkpoint(path: str | Path, *, family: str | None = None) -> object:
    """Load a PyTorch file on the CPU, safely when possible.

    First tries ``torch.load(weights_only=True)`` (tensors, containers and primitive types only). If the file
    holds other pickled objects (for example the hyper-parameters of a Lightning checkpoint saved with a
    ``Namespace`` or an ``nn.Module`` in them), it is loaded again with ``weights_only=False``, which runs
    the pickled code: only load files you trust. A warning says when this happens.

    Args:
        path: file path.
        family: the family that reads the file (``'realbasicvsr'``, ...): a vsrzoo checkpoint that records another
            family is refused (:func:`check_family`). Files without the record (official weights, bare state dicts,
            older checkpoints) pass.

    Returns:
        The loaded object.

    Raises:
        WeightsError: if the path does not exist, is not a file, or is not a PyTorch file; a checkpoint of another
            family than ``family``.
    """
    ckpt = _load(Path(path))
    if family is not None:
        check_family(ckpt, family, source=str(path))
    return ckpt


def check_family(ckpt: object, family: str, *, source: str) -> None:
    """Refuse a vsrzoo checkpoint of another family than ``family`` (its ``checkpoint['vsrzoo']['family']``).

    Raises:
        WeightsError: ``"<source> is a videogigagan checkpoint; --model realbasicvsr cannot load it (use --model
            videogigagan)"``.
    """
    recorded = checkpoint_info(ckpt).get("family")
    if recorded and recorded != family:
        raise WeightsError(f"{source} is a {recorded} checkpoint; --model {family} cannot load it "
                           f"(use --model {recorded})")


def _load(path: Path) -> object:
    """:func:`read_checkpoint` without the family check."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"weights path is not a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # garbage, not a pickle of disallowed objects
            raise WeightsError(f"{path} is not a PyTorch checkpoint ({str(exc).splitlines()[-1][:200]})") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types (RuntimeError, KeyError, EOFError, ...)
        raise WeightsError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    warnings.warn(f"{path} contains pickled Python objects; loading it with torch.load(weights_only=False). "
                  f"Only load checkpoints you trust.", stacklevel=4)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc


def check_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, *, source: str,
                     allow_missing: Callable[[str], bool] | None = None) -> None:
    """Check that ``state`` has exactly the keys of ``net.state_dict()`` with the same shapes.

    Args:
        state: candidate state dict.
        net: target module (may live on the ``meta`` device).
        source: name of the file, for the message.
        allow_missing: keys of ``net`` for which it returns True may be absent from ``state`` (e.g. the new
            layers of an inflated network, or frozen parts a checkpoint does not carry). Default: none.

    Raises:
        WeightsError: listing the missing, unexpected and mis-shaped keys (first 8 of each).
    """
    own = net.state_dict()
    missing = sorted(k for k in set(own) - set(state) if allow_missing is None or not allow_missing(k))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {tuple(getattr(state[k], 'shape', ()))} vs {tuple(own[k].shape)}" for k in own
                  if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)]
    if missing or unexpected or mismatched:
        raise WeightsError(f"{source} does not match {type(net).__name__}: {len(missing)} missing {missing[:8]}, "
                           f"{len(unexpected)} unexpected {unexpected[:8]}, {len(mismatched)} mis-shaped "
                           f"{mismatched[:8]}")


def load_state(net: nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
               allow_missing: Callable[[str], bool] | None = None) -> nn.Module:
    """:func:`check_state_dict`, then ``net.load_state_dict(state)`` (non-strict only for the allowed missing keys).

    Returns:
        ``net``.

    Raises:
        WeightsError: as :func:`check_state_dict`.
    """
    check_state_dict(state, net, source=source, allow_missing=allow_missing)
    net.load_state_dict(state, strict=allow_missing is None)
    return net


def tensor_state(state: object, *, source: str) -> dict[str, torch.Tensor]:
    """A flat ``{str: Tensor}`` state dict from a loaded file (unwrapping ``{'state_dict': ...}``).

    Raises:
        WeightsError: not a non-empty mapping of string keys to tensors.
    """
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{source} is not a state dict (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: entries that are not tensors: {bad[:5]}")
    return dict(state)


@dataclass(frozen=True)
class KeyMap:
    """Ordered regex rules that rename the keys of an official state dict to this project's names.

    Each rule is ``(pattern, replacement)``: the first pattern that matches the whole key (``re.fullmatch``) wins and
    the key becomes ``match.expand(replacement)`` (``\\1`` ... refer to groups). Keys matching a ``drop`` pattern are
    left out (fixed buffers, duplicated tensors); keys matching no rule are kept unchanged, or refused when
    ``strict``. The map is the documentation: ``convert.py`` files print their tables from it.

    Attributes:
        rules: ``((pattern, replacement), ...)`` in priority order.
        drop: patterns of keys to leave out.
        strict: a key matched by no rule (and not dropped) is an error instead of kept as is.
        name: what the keys belong to, for messages (e.g. ``'RealBasicVSR (mmediting)'``).
    """

    rules: tuple[tuple[str, str], ...]
    drop: tuple[str, ...] = ()
    strict: bool = False
    name: str = "weights"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple((re.compile(p), r) for p, r in self.rules))
        object.__setattr__(self, "_dropped", tuple(re.compile(p) for p in self.drop))

    def rename(self, key: str) -> str | None:
        """Our name of official ``key``; None when it is dropped or (``strict``) matched by no rule."""
        if any(pattern.fullmatch(key) for pattern in self._dropped):
            return None
        for pattern, replacement in self._compiled:
            match = pattern.fullmatch(key)
            if match is not None:
                return match.expand(replacement)
        return None if self.strict else key

    def is_dropped(self, key: str) -> bool:
        """True if ``key`` matches a ``drop`` pattern."""
        return any(pattern.fullmatch(key) for pattern in self._dropped)

    def apply(self, state: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
        """Rename every key of ``state`` (tensors shared, not copied).

        Raises:
            WeightsError: keys that no rule covers (``strict``), or two official keys renamed to one.
        """
        out: dict[str, torch.Tensor] = {}
        unknown = []
        for key, value in state.items():
            new = self.rename(key)
            if new is None:
                if not self.is_dropped(key):
                    unknown.append(key)
                continue
            if new in out:
                raise WeightsError(f"{source}: two {self.name} keys map to {new!r}")
            out[new] = value
        if unknown:
            raise WeightsError(f"{source}: {len(unknown)} keys that are not {self.name} weights, e.g. {unknown[:6]}")
        return out

    def prefixed(self, official_prefix: str, our_prefix: str) -> KeyMap:
        """The same rules for keys under ``official_prefix`` renamed under ``our_prefix`` (drops likewise)."""
        return KeyMap(rules=tuple((re.escape(official_prefix) + p, our_prefix.replace("\\", "\\\\") + r)
                                  for p, r in self.rules),
                      drop=tuple(re.escape(official_prefix) + p for p in self.drop), strict=self.strict,
                      name=self.name)

    def __add__(self, other: KeyMap) -> KeyMap:
        """Rules of ``self`` then of ``other`` (strict if either is)."""
        return KeyMap(rules=self.rules + other.rules, drop=self.drop + other.drop,
                      strict=self.strict or other.strict, name=self.name)


# ------------------------------------------------------------------------------------------------ Lightning checkpoints
def plain(value: object) -> object:
    """A jsonargparse ``Namespace`` (as Lightning may record hyper-parameters) as a dict; anything else as is."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def refuse_recorded(source: str, overrides: Mapping[str, object], recorded: tuple[str, ...]) -> None:
    """Refuse loader overrides of what a checkpoint records (its architecture).

    Raises:
        ConfigError: naming the checkpoint and the options.
    """
    given = sorted(k for k in recorded if k in overrides)
    if given:
        raise ConfigError(f"{source}: {given} are recorded in the checkpoint and cannot be overridden")


def checkpoint_info(ckpt: object) -> dict[str, object]:
    """The vsrzoo section of a loaded checkpoint (:data:`CHECKPOINT_INFO`; empty for older or foreign files)."""
    info = ckpt.get(CHECKPOINT_INFO) if isinstance(ckpt, Mapping) else None
    return dict(info) if isinstance(info, Mapping) else {}


def hparams_of(ckpt: object) -> dict[str, object]:
    """``ckpt['hyper_parameters']`` as a plain dict (empty when absent)."""
    hparams = plain(ckpt.get("hyper_parameters")) if isinstance(ckpt, Mapping) else None
    return dict(hparams) if isinstance(hparams, Mapping) else {}


def is_lightning_checkpoint(ckpt: object, prefixes: tuple[str, ...] = (LIGHTNING_EMA_PREFIX, LIGHTNING_PREFIX)
                            ) -> bool:
    """True if ``ckpt`` is a checkpoint of this project's systems (``state_dict`` with keys under ``prefixes``)."""
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    return isinstance(state, Mapping) and any(isinstance(k, str) and k.startswith(prefixes) for k in state)


def lightning_generator_state(ckpt: Mapping, *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Generator weights of a project Lightning checkpoint, prefix removed.

    Args:
        ckpt: loaded checkpoint (see :func:`is_lightning_checkpoint`).
        use_ema: take ``net_g_ema.*`` when present (default); a system trained without EMA has only
            ``net_g.*``, which is then used. ``use_ema=False`` always takes ``net_g.*``. An EMA stored as a
            ``torch.optim.swa_utils.AveragedModel`` (``module.*`` keys and ``n_averaged``) is unwrapped.
    """
    state = ckpt["state_dict"]
    prefix = LIGHTNING_PREFIX
    if use_ema and any(k.startswith(LIGHTNING_EMA_PREFIX) for k in state):
        prefix = LIGHTNING_EMA_PREFIX
    generator = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if "n_averaged" in generator and all(k.startswith("module.") for k in generator if k != "n_averaged"):
        # torch.optim.swa_utils.AveragedModel wrapper (EMA): weights under 'module.', plus a step counter.
        generator = {k.removeprefix("module."): v for k, v in generator.items() if k != "n_averaged"}
    return generator


def net_kwargs_from_hparams(ckpt: Mapping, net_class: type[nn.Module], *, source: str) -> dict[str, object]:
    """Constructor arguments of the generator recorded in a Lightning checkpoint's ``hyper_parameters``.

    ``hyper_parameters['net']`` (or ``['net_g']``) may be a LightningCLI spec
    ``{'class_path': ..., 'init_args': {...}}``, a plain kwargs dict, a jsonargparse ``Namespace`` or the
    module itself (then nothing is read: the layout comes from the weights).

    Returns:
        Kwargs restricted to ``net_class``'s signature (may be empty).

    Raises:
        WeightsError: if the recorded class is not ``net_class``.
    """
    hparams = hparams_of(ckpt)
    spec = hparams.get("net", hparams.get("net_g"))
    if isinstance(spec, nn.Module):
        if not isinstance(spec, net_class):
            raise WeightsError(f"{source} holds a {type(spec).__name__}, not a {net_class.__name__}")
        return {}
    spec = plain(spec)
    if not isinstance(spec, Mapping):
        return {}
    if "class_path" in spec:
        class_name = str(spec["class_path"]).rsplit(".", 1)[-1]
        if class_name != net_class.__name__:
            raise WeightsError(f"{source} holds a {spec['class_path']}, not a {net_class.__name__}")
        spec = plain(spec.get("init_args") or {})
    accepted = inspect.signature(net_class).parameters
    return {k: v for k, v in dict(spec).items() if k in accepted}
