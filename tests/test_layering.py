"""The layout is the architecture: import-linter's contracts (setup.cfg) hold, and a family is its folder.

Layers, top to bottom: cli > benchmark, weights_command > hub > models > systems > inference, metrics, testing >
diffusion, layers, data, losses > weights, family, config, provenance > catalogue > errors; families never import each
other.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(linter), "--config", str(ROOT / "setup.cfg")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module", ["zoo.hub", "zoo.family", "zoo.weights", "zoo.catalogue",
                                    "zoo.weights_command", "zoo.diffusion.tiles"])
def test_light_modules_do_not_import_heavy_libraries(module):
    """The family table and the leaves stay cheap to import: no diffusers, transformers or lightning."""
    code = (f"import sys, {module}; heavy = [m for m in ('diffusers', 'transformers', 'lightning') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_every_family_folder_has_a_spec_listed_in_the_table():
    from zoo.hub import FAMILIES

    folders = {p.name for p in (ROOT / "zoo" / "models").iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(FAMILIES)
    for name, spec in FAMILIES.items():
        assert spec.load.__module__ == f"zoo.models.{name}.spec"
        assert (ROOT / "zoo" / "models" / name / "README.md").is_file()
