"""Benchmark suites and leaderboards: suite parsing, the LQ cache, the Real-ESRGAN LQ = the datamodule's val LQ,
and a `vsrzoo benchmark` run on the embedded sample (bicubic row, header, every markdown number from the CSV)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from zoo.benchmark import load_clips, load_suite, read_csv
from zoo.benchmark.report import COLUMNS, MEAN, NOT_COMPUTED
from zoo.benchmark.suite import parse_suite
from zoo.config import describe_module
from zoo.data import VSRDataModule
from zoo.errors import ConfigError
from zoo.hub import family
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.testing import sample_clip_dir, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
TINY_SUITE = ROOT / "configs" / "benchmarks" / "sample_tiny.yaml"
VID4_SUITE = ROOT / "configs" / "benchmarks" / "vid4.yaml"
VID4_FULL_SUITE = ROOT / "configs" / "benchmarks" / "vid4_full.yaml"
#: Published Vid4 x4 BI bicubic PSNR-Y / SSIM-Y per clip (EDVR, Wang et al., CVPRW 2019, Table 1; the tables of
#: BasicVSR and later papers reprint it): all frames, whole frames, no border crop.
PUBLISHED_VID4_BICUBIC = {"vid4_calendar": (20.39, 0.5720), "vid4_city": (25.16, 0.6028), "vid4_foliage": (23.47, 0.5666)}


def write_tiny_checkpoint(path: Path) -> Path:
    """A RealBasicVSR checkpoint in the project's Lightning layout (EMA generator + recorded net config)."""
    torch.manual_seed(0)
    net = RealBasicVSRNet(**family("realbasicvsr").variant("tiny")["net"])
    state = {f"net_g_ema.{k}": v for k, v in net.state_dict().items()}
    made_by = {"command": "lightning fit --config zoo/realbasicvsr.yaml", "commit": "abc1234", "date": "2026-01-01"}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_module(net)},
                "vsrzoo": {"family": "realbasicvsr", "made_by": made_by}}, path)
    return path


def _suite_dict(**changes) -> dict:
    data = yaml.safe_load(TINY_SUITE.read_text())
    data.update(changes)
    return data


# ----------------------------------------------------------------------------------------------------------- parsing
def test_shipped_suites_parse():
    suite = load_suite(TINY_SUITE)
    assert suite.name == "sample_tiny" and suite.scale == 4 and len(suite.sha256) == 64
    assert suite.entries[0].is_bicubic
    assert [s.protocol for s in suite.sets] == ["bicubic", "realbasicvsr", "lq"]
    assert all(s.paths == (str(sample_clip_dir()),) and not s.missing for s in suite.sets)
    random_entry = suite.entry("realbasicvsr_tiny_random")
    assert random_entry.is_random and random_entry.family == "realbasicvsr" and random_entry.variant == "tiny"
    assert random_entry.describe_weights() == "random (not trained)"
    vid4 = load_suite(VID4_SUITE)
    assert {s.name for s in vid4.sets} == {"vid4_bi", "vid4_realbasicvsr", "real_lq"}
    assert vid4.entry("realbasicvsr_cpu").weights.endswith("realbasicvsr_cpu_stage1.ckpt")
    assert vid4.select(entries=["realbasicvsr_cpu"]).entries[0].is_bicubic  # the baseline always stays


def test_suite_adds_bicubic_and_rejects_bad_files():
    data = _suite_dict(entries=[{"name": "rand", "weights": "random", "net": {
        "class_path": "zoo.models.realbasicvsr.net.RealBasicVSRNet", "init_args": {"mid_channels": 8}}}])
    suite = parse_suite(data, name="x")
    assert [e.name for e in suite.entries] == ["bicubic", "rand"]
    with pytest.raises(ConfigError, match="unknown key"):
        parse_suite(_suite_dict(metrix={}), name="x")
    with pytest.raises(ConfigError, match="protocol"):
        parse_suite(_suite_dict(sets=[{"name": "a", "protocol": "blur", "paths": ["x"]}]), name="x")
    with pytest.raises(ConfigError, match="two entries are named 'a'"):
        parse_suite(_suite_dict(entries=[{"name": "a"}, {"name": "a"}]), name="x")
    with pytest.raises(ConfigError, match="needs a model 'family'"):
        parse_suite(_suite_dict(entries=[{"name": "r", "weights": "random"}]), name="x")
    with pytest.raises(ConfigError, match="'variant' sizes the family's random networks"):
        parse_suite(_suite_dict(entries=[{"name": "r", "family": "realbasicvsr", "weights": "w.ckpt",
                                          "variant": "tiny"}]), name="x")
    from zoo.benchmark import build_upscaler

    suite = parse_suite(_suite_dict(entries=[{"name": "r", "family": "realbasicvsr", "weights": "random",
                                              "variant": "huge"}]), name="x")
    with pytest.raises(ConfigError, match="no variant 'huge'"):  # the family table knows its variants
        build_upscaler(suite.entry("r"))
    with pytest.raises(ConfigError, match="multiple of the scale"):
        parse_suite(_suite_dict(sets=[{"name": "a", "protocol": "bicubic", "paths": ["x"], "max_size": 30}]),
                    name="x")
    missing = parse_suite(_suite_dict(sets=[{"name": "a", "protocol": "lq", "paths": ["/nonexistent/clip"]}]),
                          name="x")
    assert "does not exist" in missing.sets[0].missing


# --------------------------------------------------------------------------------------------------------- LQ cache
def _small_set(protocol: str, **changes):
    sets = [{"name": f"s_{protocol}", "protocol": protocol, "paths": [str(sample_clip_dir())], "num_frames": 3,
             "max_size": 64, "seed": 5}]
    sets[0].update(changes)
    return parse_suite(_suite_dict(sets=sets), name="small").sets[0]


def test_lq_cache_is_reused_not_rewritten(tmp_path):
    eval_set = _small_set("realbasicvsr")
    first = load_clips(eval_set, cache_dir=tmp_path)
    files = sorted(first[0].lq_dir.iterdir())
    assert [f.name for f in files] == ["00000000.png", "00000001.png", "00000002.png", "lq.json"]
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    second = load_clips(eval_set, cache_dir=tmp_path)
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before  # same files, not rewritten
    assert torch.equal(first[0].lq, second[0].lq) and torch.equal(first[0].gt, second[0].gt)
    assert first[0].lq.shape == (1, 3, 3, 16, 16) and first[0].gt.shape == (1, 3, 3, 64, 64)
    # an incomplete folder (a frame lost) is rebuilt with the same bytes
    files[1].unlink()
    third = load_clips(eval_set, cache_dir=tmp_path)
    assert files[1].read_bytes() == before[files[1]][1]
    assert torch.equal(third[0].lq, first[0].lq)
    # another seed is another cache folder
    other = load_clips(_small_set("realbasicvsr", seed=6), cache_dir=tmp_path)
    assert other[0].lq_dir != first[0].lq_dir


def test_realbasicvsr_lq_equals_datamodule_val_lq(tmp_path):
    clip = load_clips(_small_set("realbasicvsr"), cache_dir=tmp_path)[0]
    dm = VSRDataModule(val_paths=[str(sample_clip_dir())], val_degradation="synthetic", val_seed=5,
                       val_num_frames=3, val_max_size=64)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["key"] == [clip.key]
    assert torch.equal(batch["lq"], clip.lq)  # the cached PNG frames hold exactly the datamodule's LQ
    assert torch.equal(batch["gt"], clip.gt)


# -------------------------------------------------------------------------------------------------- leaderboard run
@pytest.fixture(scope="module")
def leaderboard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    ckpt = write_tiny_checkpoint(tmp / "tiny_realbasicvsr.ckpt")
    data = _suite_dict(name="tiny_test", cache_dir=str(tmp / "cache"))
    for eval_set in data["sets"]:
        eval_set["num_frames"] = 3
    data["entries"] = [
        {"name": "tiny_ckpt", "family": "realbasicvsr", "weights": str(ckpt), "label": "tiny random checkpoint"},
        {"name": "absent", "family": "realbasicvsr", "weights": str(tmp / "absent.ckpt"),
         "weights_from": "official release"},
    ]
    suite_path = tmp / "tiny_test.yaml"
    suite_path.write_text(yaml.safe_dump(data))
    from zoo.cli import main

    argv = ["benchmark", "--suite", str(suite_path), "--output-dir", str(tmp / "results"), "--quiet"]
    assert main(argv) == 0
    return {"csv": tmp / "results" / "tiny_test.csv", "md": tmp / "results" / "tiny_test.md",
            "command": "vsrzoo " + " ".join(argv)}


def test_leaderboard_has_bicubic_and_models(leaderboard):
    rows = read_csv(leaderboard["csv"])
    assert list(rows[0]) == [c[0] for c in COLUMNS]
    means = {(r["set"], r["entry"]): r for r in rows if r["clip"] == MEAN}
    for set_name in ("sample_bi", "sample_realbasicvsr", "sample_real"):
        assert means[(set_name, "bicubic")]["status"] == "ok"
        assert means[(set_name, "tiny_ckpt")]["status"] == "ok"
        assert means[(set_name, "absent")]["status"] == "skipped"
    bi = means[("sample_bi", "bicubic")]
    assert 15 < float(bi["psnr"]) < 50 and 0 < float(bi["ssim"]) <= 1 and float(bi["fps"]) > 0
    assert float(means[("sample_bi", "tiny_ckpt")]["params_m"]) > 0
    assert means[("sample_real", "bicubic")]["niqe"] and not means[("sample_real", "bicubic")]["psnr"]
    assert means[("sample_bi", "bicubic")]["dists"] == ""  # not computed, the markdown says why


def test_markdown_names_date_device_versions_command(leaderboard):
    text = leaderboard["md"].read_text()
    assert f"**Command:** `{leaderboard['command']}`" in text
    assert re.search(r"\*\*Date:\*\* \d{4}-\d\d-\d\dT", text)
    assert re.search(r"\*\*Device:\*\* CPU: .+, \d+ torch threads", text)
    assert re.search(r"\*\*Versions:\*\* python [\d.]+, vsrzoo [\d.]+, torch ", text)
    assert "DISTS is empty" in text and "skipped" in text


def test_entries_table_names_how_the_weights_were_made(leaderboard):
    entries = {body[0]: dict(zip(header, body)) for section, header, rows in _md_tables(leaderboard["md"].read_text())
               if section == "Entries" for body in rows}
    assert entries["tiny_ckpt"]["Weights made by"] == "`lightning fit --config zoo/realbasicvsr.yaml` at commit abc1234"
    assert entries["absent"]["Weights made by"] == "official release"  # the suite's weights_from
    assert entries["bicubic"]["Weights made by"] == "—"


def _md_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(section heading, header cells, body rows) of every markdown table under a '## <set> (...)' heading."""
    tables, section, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:]
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|--"):
            header = [c.strip() for c in lines[i].strip("|").split(" | ")]
            body, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                body.append([c.strip() for c in lines[i][2:-2].split(" | ")])
                i += 1
            tables.append((section, header, body))
            continue
        i += 1
    return tables


def test_every_markdown_number_is_in_the_csv(leaderboard):
    rows = read_csv(leaderboard["csv"])
    by_header = {header: key for key, header, decimals, _ in COLUMNS if decimals is not None}
    checked = 0
    for section, header, body in _md_tables(leaderboard["md"].read_text()):
        set_name = section.split(" ")[0]
        if not any(r["set"] == set_name for r in rows):
            continue  # the evaluation-set description table
        for cells in body:
            record = dict(zip(header, cells, strict=True))
            entry = record["Entry"].strip("*")
            clip = record.get("Clip", MEAN)
            matches = [r for r in rows if r["set"] == set_name and r["entry"] == entry and r["clip"] == clip]
            assert len(matches) == 1, (set_name, entry, clip)
            row = matches[0]
            for name, value in record.items():
                if name not in by_header:
                    continue
                if value == NOT_COMPUTED or value == "—":
                    assert row[by_header[name]] == "", (set_name, entry, name)
                else:
                    assert value == row[by_header[name]], (set_name, entry, name, value)
                    float(value)
                    checked += 1
    assert checked > 30


def test_lq_cache_key_hashes_the_complete_degradation(monkeypatch):
    """Any default of the degradation (not only scale and drift) or its implementation version changes the key."""
    from zoo.benchmark import sets
    from zoo.benchmark.suite import EvalSet
    from zoo.data.degradations import pipeline

    from zoo.data.degradations import realbasicvsr

    synthetic = EvalSet(name="a", protocol="realbasicvsr", paths=("x",))
    bicubic = EvalSet(name="b", protocol="bicubic", paths=("x",))
    tags = sets.cache_tag(synthetic, 4), sets.cache_tag(bicubic, 4)
    monkeypatch.setitem(realbasicvsr.OFFICIAL_TABLE["jpeg2"], "quality", [40, 95])
    assert sets.cache_tag(synthetic, 4) != tags[0]
    monkeypatch.setitem(realbasicvsr.OFFICIAL_TABLE["jpeg2"], "quality", [30, 95])
    assert sets.cache_tag(synthetic, 4) == tags[0]
    monkeypatch.setattr(realbasicvsr.RealBasicVSRDegradation, "VERSION", 2)
    assert sets.cache_tag(synthetic, 4) != tags[0]
    # the torch variant's configuration is complete too: any default, not only scale and drift
    base = pipeline.degradation_config(pipeline.RealESRGANDegradation())
    assert pipeline.degradation_config(pipeline.RealESRGANDegradation(jpeg_range2=(40.0, 95.0))) != base
    monkeypatch.setattr(pipeline.BicubicDegradation, "VERSION", 1)  # the implementation before MATLAB imresize
    assert sets.cache_tag(bicubic, 4) != tags[1]


@pytest.mark.skipif(shared_data_dir() is None or not (shared_data_dir() / "vid4_city").is_dir(),
                    reason="the Vid4 clips (../shared/data or $VSRZOO_SHARED_DATA) are not on this machine")
def test_full_vid4_bicubic_row_matches_the_published_figures(tmp_path):
    """The full Vid4 suite's bicubic row lands within 0.05 dB (and 0.001 SSIM) of the published per-clip figures,
    which checks the BI protocol (MATLAB imresize down and up), the Y conversion, the 8-bit rounding, the
    no-crop setting and the per-clip averaging together."""
    from zoo.cli import main

    suite = load_suite(VID4_FULL_SUITE)
    assert suite.metrics.crop_border == 0 and suite.metrics.y_channel
    assert [(s.num_frames, s.max_size, s.protocol) for s in suite.sets] == [(None, None, "bicubic")]
    argv = ["benchmark", "--suite", str(VID4_FULL_SUITE), "--entries", "bicubic", "--output-dir", str(tmp_path),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    rows = {r["clip"]: r for r in read_csv(tmp_path / "vid4_full.csv") if r["entry"] == "bicubic"}
    for clip, (psnr, ssim) in PUBLISHED_VID4_BICUBIC.items():
        assert abs(float(rows[clip]["psnr"]) - psnr) < 0.05, (clip, rows[clip]["psnr"], psnr)
        assert abs(float(rows[clip]["ssim"]) - ssim) < 0.001, (clip, rows[clip]["ssim"], ssim)
        assert int(rows[clip]["frames"]) == {"vid4_calendar": 41, "vid4_city": 34, "vid4_foliage": 49}[clip]
    mean = sum(float(rows[c]["psnr"]) for c in PUBLISHED_VID4_BICUBIC) / 3
    assert abs(float(rows[MEAN]["psnr"]) - mean) < 0.01  # the mean of the per-clip means (CSV: 2 decimals)
