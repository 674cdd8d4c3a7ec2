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
