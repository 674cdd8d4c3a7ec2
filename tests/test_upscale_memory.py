"""The committed measurement of `vsrzoo upscale`'s peak memory against video length meets the target.

Measuring in the test itself (two fresh processes of the command) would take most of a minute on CI's two cores, mostly
importing torch; so the test checks the committed results instead: produced by the current version of
``benchmarks/upscale_memory.py``, rendered from its JSON, and peak RSS rising by at most 10 % from 100 to 1000 frames.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiny import load_script  # noqa: E402 - tests/ is on the path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "upscale_memory"


def test_peak_rss_grows_at_most_10_percent_from_100_to_1000_frames() -> None:
    script = load_script("benchmarks/upscale_memory.py")
    result = json.loads(RESULTS.with_suffix(".json").read_text())
    assert result["script_version"] == script.SCRIPT_VERSION, "re-run the benchmark: the script changed"
    peaks = {row["frames"]: row["peak_rss_mib"] for row in result["rows"]}
    assert {10, 100, 300, 1000} <= set(peaks), peaks
    assert script.growth(result["rows"], 100, 1000) <= 0.10, peaks
    assert result["growth"]["100 -> 1000"] == round(script.growth(result["rows"], 100, 1000), 4)
    # the markdown is the JSON rendered by the script (no hand-edited figure)
    assert RESULTS.with_suffix(".md").read_text() == script.render_markdown(result)
