"""Tiny networks of the families' ``tiny`` variants (``zoo/models/<family>/spec.py``), shared by the test files."""
from __future__ import annotations

import pytest

from zoo.hub import family
from zoo.layers.discriminators import VideoDiscriminator
from zoo.models.videogigagan.net import VideoGigaGANNet

VIDEOGIGAGAN_TINY = family("videogigagan").variant("tiny")


def tiny_net(**overrides: object) -> VideoGigaGANNet:
    """The VideoGigaGAN family's tiny generator; ``overrides`` win."""
    return VideoGigaGANNet(**{**VIDEOGIGAGAN_TINY["net"], **overrides})


def tiny_discriminator(**overrides: object) -> VideoDiscriminator:
    """The VideoGigaGAN family's tiny video discriminator; ``overrides`` win."""
    return VideoDiscriminator(**{**VIDEOGIGAGAN_TINY["discriminator"], **overrides})


def fit_recipe(args: list[str], root: object) -> tuple[object, object]:
    """Run `lightning fit` on a recipe for one step with one validation batch, and return ``(cli, last_ckpt)``.

    Goes through the zoo's LightningCLI (:func:`zoo.cli.make_cli`: the same parsing and instantiation as the
    ``lightning`` command), then ``trainer.fit``; asserts that the recipe's checkpoint callback wrote ``last.ckpt``
    and that every logged training loss is finite, and that the checkpoint records how it was made (command, commit).
    """
    import math
    from pathlib import Path

    from zoo.cli import make_cli

    cli = make_cli([*args, "--trainer.max_steps=1", "--trainer.val_check_interval=1", "--trainer.limit_val_batches=1",
                    "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
                    "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={root}"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    losses = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("train/")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    last = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert last.is_file(), f"no last.ckpt written under {root}"
    import torch

    made_by = torch.load(last, map_location="cpu", weights_only=False)["vsrzoo"]["made_by"]
    assert made_by["command"] and set(made_by) == {"command", "commit", "date"}, made_by  # zoo.provenance
    return cli, last


def load_script(relative: str):  # noqa: ANN201 - a module
    """Import a project script by its path relative to the project root (the parity and golden recorders under
    ``benchmarks/parity/``, whose functions rebuild the recorded weights and inputs)."""
    import importlib.util
    from pathlib import Path

    import sys

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_torch_thread():
    """A module's in-process runs on one torch thread (oneDNN may round differently with another thread count);
    import it into a test module and use it (``autouse`` by wrapping, or by name)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def numbers_in(text: str) -> list[str]:
    """The decimal numbers written in ``text`` (as strings, e.g. ``'12.5'``)."""
    import re

    return re.findall(r"\d+(?:\.\d+)?", text)


def json_numbers(value: object) -> set[str]:
    """Every int and float in a JSON value, as ``str`` prints it (booleans excluded): what a report rendered from
    the JSON may print."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, (int, float)):
        return {str(value)}
    if isinstance(value, dict):
        return set().union(*(json_numbers(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(json_numbers(v) for v in value)) if value else set()
    return set()
