"""benchmarks/speed.py --plan ratio: both nets in one process, calls interleaved, ratios computed from the rows.

A dry run at a small size (64x64: basicsr's SPyNet needs 64 or more; 2 frames, 2 calls per net, full-size nets)
checks the call order, that every time comes back, and that the markdown's mins, medians and ratios are the ones the
recorded times give (no number typed); a JSON re-render writes the same table. No timing is asserted.
"""
from __future__ import annotations

import json
from statistics import median

import pytest

from _tiny import load_script  # noqa: E402 - tests/ is on the path


@pytest.fixture(scope="module")
def speed():
    return load_script("benchmarks/speed.py")


@pytest.fixture(scope="module")
def dry_run(speed):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return speed.ratio_worker({"kind": "ratio", "height": 64, "width": 64, "frames": 2, "repeats": 2,
                                   "device": "cpu"})
    finally:
        torch.set_num_threads(threads)


def _table_row(markdown: str) -> list[str]:
    (row,) = [line for line in markdown.splitlines() if line.startswith("| 64x64 -> ")]
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_calls_alternate_and_every_time_is_recorded(speed, dry_run):
    ours, theirs = speed.RATIO_PAIR
    assert dry_run["order"] == [ours, theirs, theirs, ours]
    assert [len(dry_run["times"][f]) for f in (ours, theirs)] == [2, 2]
    assert all(t > 0 for f in (ours, theirs) for t in dry_run["times"][f])
    assert len(dry_run["load_avg"]) == 5  # before each of the 4 timed calls, and once at the end
    assert dry_run["out_shape"] == [1, 2, 3, 256, 256]
    assert dry_run["params_m"][ours] == pytest.approx(dry_run["params_m"][theirs])  # the same architecture


def test_markdown_ratios_come_from_the_recorded_times(speed, dry_run, tmp_path):
    path = tmp_path / "ratio.md"
    speed.write_ratio_markdown(path, [dry_run], command="python benchmarks/speed.py --plan ratio", device="cpu")
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["plan"] == "ratio"
    (r,) = saved["results"]
    ours, theirs = (r["times"][f] for f in speed.RATIO_PAIR)
    cells = _table_row(path.read_text())
    assert cells[1:4] == ["2", "2", str(r["threads"])]
    assert cells[4] == f"{min(ours):.2f} / {median(ours):.2f}"
    assert cells[5] == f"{min(theirs):.2f} / {median(theirs):.2f}"
    assert cells[6] == f"**{min(ours) / min(theirs):.3f}**"
    assert cells[7] == f"{median(ours) / median(theirs):.3f}"
    assert cells[8] == f"{min(r['load_avg']):.1f} - {max(r['load_avg']):.1f}"
    assert cells[9] == ", ".join(f"{t:.2f}" for t in ours)

    rendered = tmp_path / "rendered.md"
    assert speed.main(["--render", str(path.with_suffix(".json")), "--output", str(rendered)]) == 0
    assert _table_row(rendered.read_text()) == cells
    assert "Markdown re-rendered" in rendered.read_text()
    versions = [line for line in path.read_text().splitlines() if line.startswith("- **Versions:** ")]
    assert versions == [line for line in rendered.read_text().splitlines() if line.startswith("- **Versions:** ")]
    assert versions[0] == "- **Versions:** " + saved["versions"]  # the measuring run's, kept by the re-render


def test_summary_uses_min_and_median_of_each_net(speed):
    ours, theirs = speed.RATIO_PAIR
    summary = speed.ratio_summary({"times": {ours: [3.0, 1.0, 2.0, 9.0], theirs: [2.0, 4.0, 8.0, 4.0]}})
    assert summary == {"ours_min": 1.0, "ours_median": 2.5, "theirs_min": 2.0, "theirs_median": 4.0,
                       "ratio_min": 0.5, "ratio_median": 0.625}
