"""The comparison notebook runs headless on the tiny suite (so it cannot rot).

The kernel is this interpreter: a temporary kernelspec pointing at ``sys.executable`` is put on ``JUPYTER_PATH``,
so the test works wherever ``pip install -e .[test]`` ran, without a registered ``python3`` kernel.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
TINY_SUITE = ROOT / "configs" / "benchmarks" / "sample_tiny.yaml"
NOTEBOOK = ROOT / "notebooks" / "compare.ipynb"
KERNEL = "vsrzoo-test-kernel"
#: Set VSRZOO_EXECUTED_NOTEBOOK=path to keep the executed notebook (to look at its figures).
EXECUTED_COPY = os.environ.get("VSRZOO_EXECUTED_NOTEBOOK")


def write_tiny_checkpoint(path: Path) -> Path:
    """A tiny random RealBasicVSR checkpoint in the project's Lightning layout (as in test_benchmark.py)."""
    import torch

    from zoo.config import describe_module
    from zoo.hub import family
    from zoo.models.realbasicvsr.net import RealBasicVSRNet

    torch.manual_seed(0)
    net = RealBasicVSRNet(**family("realbasicvsr").variant("tiny")["net"])
    state = {f"net_g_ema.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_module(net)}}, path)
    return path


def _kernelspec(folder: Path) -> Path:
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vsrzoo test (this interpreter)", "language": "python"}))
    return folder


def test_compare_notebook_runs_headless(tmp_path, monkeypatch):
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt")
    data = yaml.safe_load(TINY_SUITE.read_text())
    data.update(name="notebook_tiny", cache_dir=str(tmp_path / "cache"))
    for eval_set in data["sets"]:
        eval_set["num_frames"] = 3
    data["entries"] = [{"name": "tiny_ckpt", "family": "realbasicvsr", "weights": str(ckpt),
                        "label": "tiny random checkpoint (test)"}]
    suite_path = tmp_path / "notebook_tiny.yaml"
    suite_path.write_text(yaml.safe_dump(data))

    monkeypatch.setenv("JUPYTER_PATH", str(_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # no writes to a (maybe read-only) home
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("VSRZOO_COMPARE_SUITE", str(suite_path))
    monkeypatch.setenv("VSRZOO_COMPARE_SET", "sample_bi")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    if EXECUTED_COPY:
        nbformat.write(notebook, EXECUTED_COPY)

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 4  # crops, x-t slices, per-frame curves, leaderboard bars
    text = "".join(out.get("text", "") for out in outputs)
    assert "tiny_ckpt" in text and "set sample_bi" in text
