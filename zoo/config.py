"""Recording a network's constructor arguments, so that checkpoints can rebuild it without the CLI config.

Nets stay plain ``nn.Module`` classes whose typed keyword-only ``__init__`` is their configuration. Decorating the
``__init__`` with :func:`register_init_args` stores the bound keyword arguments (defaults filled in) on the instance
as ``init_args``; :func:`describe_module` turns an instance into the ``{'class_path', 'init_args'}`` form that
LightningCLI/jsonargparse writes in YAML, and :func:`build_module` does the reverse. This is the same idea as
diffusers' ``register_to_config``, without tying the nets to diffusers' ``ModelMixin``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

from torch import nn

from zoo.errors import ConfigError


def register_init_args(init: Callable) -> Callable:
    """Decorator for ``__init__``: record its keyword arguments (with defaults) as ``self.init_args`` (a dict)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        recorded = {k: v for k, v in bound.arguments.items() if k != "self"}
        init(self, *args, **kwargs)
        # the outermost decorated __init__ (the concrete class) wins
        if not getattr(self, "_init_args_locked", False):
            object.__setattr__(self, "init_args", recorded)
            object.__setattr__(self, "_init_args_locked", True)

    return wrapper


def describe_module(module: nn.Module) -> dict[str, Any]:
    """Return ``{'class_path': 'pkg.mod.Class', 'init_args': {...}}`` for a module built with :func:`register_init_args`.

    Raises:
        ConfigError: when the module did not record its constructor arguments.
    """
    if not hasattr(module, "init_args"):
        raise ConfigError(f"{type(module).__qualname__} does not record its init args (decorate __init__ with register_init_args)")
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(module.init_args)}


def build_module(spec: dict[str, Any], **overrides: Any) -> nn.Module:
    """Instantiate ``{'class_path', 'init_args'}`` with keyword ``overrides`` applied on top of ``init_args``.

    Only classes inside the ``zoo`` package are built (a checkpoint cannot make us import arbitrary code).

    Raises:
        ConfigError: for a malformed spec, a class outside ``zoo``, or an override the class does not accept.
    """
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ConfigError(f"expected a dict with 'class_path' and 'init_args', got {spec!r}")
    class_path = str(spec["class_path"])
    if not class_path.startswith("zoo."):
        raise ConfigError(f"refusing to build {class_path!r}: only classes of the zoo package can be built from a checkpoint")
    module_name, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    kwargs = dict(spec.get("init_args") or {})
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in overrides if k not in accepted]
    if unknown:
        raise ConfigError(f"{name} has no option(s) {unknown}; accepted: {sorted(k for k in accepted if k != 'self')}")
    kwargs.update(overrides)
    return cls(**kwargs)
