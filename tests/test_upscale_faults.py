"""`vsrzoo upscale` when things go wrong: signals, a killed run, a full disk, --resume, refusals, batch inputs.

Inputs are 32x32 crops of the real sample clip (zoo/assets/sample/demo_000) made at test time; the network is the
tiny RealBasicVSR (random weights, or the same seeded weights saved to a file where two runs must agree).
Subprocess runs go through `python -c` with a stand-in for `zoo.inference.upscale_tensor` that stops before a given
chunk and waits there (so that the test sends its signal at a known point); everything else is `vsrzoo upscale`.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import zoo.hub
import zoo.inference
from zoo.cli import main
from zoo.data.video_io import clean_stale_partials, open_video
from zoo.hub import family
from zoo.inference import work_folder
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.testing import sample_clip_dir, write_small_real_mp4

FRAMES = 8
# --chunk-frames 4 --overlap 1 over 8 frames: chunks [0, 4) [2, 6) [4, 8) (overlaps of 2 frames)
CHUNKS = ["--chunk-frames", "4", "--overlap", "1"]
CHUNK_COUNT = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

# `vsrzoo upscale` with upscale_tensor stopping before chunk $HOLD_AT: it writes $READY and waits for a signal
HELD_RUN = """
import os, sys, time
from pathlib import Path
import zoo.inference as inference
hold_at, ready, original, calls = int(os.environ["HOLD_AT"]), Path(os.environ["READY"]), inference.upscale_tensor, [0]
def held(*args, **kwargs):
    if calls[0] == hold_at:
        ready.write_text("waiting")
        while True:
            time.sleep(0.02)
    calls[0] += 1
    return original(*args, **kwargs)
inference.upscale_tensor = held
from zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _crop_clip(folder: Path, num_frames: int, top: int = 100, left: int = 200) -> Path:
    folder.mkdir(parents=True)
    for i in range(num_frames):
        image = cv2.imread(str(sample_clip_dir() / f"{i % 20:08d}.png"))
        cv2.imwrite(str(folder / f"{i:08d}.png"), image[top:top + 32, left:left + 32])
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every in-process run of this file on one thread, as the subprocesses (OMP_NUM_THREADS=1): oneDNN's
    convolutions can round differently with another thread count, and the resume tests compare frames exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """8 real frames, 32x32."""
    return _crop_clip(tmp_path_factory.mktemp("in") / "clip", FRAMES)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The tiny RealBasicVSR with seeded random weights, as a state_dict file (two runs load the same net)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(RealBasicVSRNet(**family("realbasicvsr").variant("tiny")["net"]).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 6-frame 32x32 H.264 video of the real sample (or of the shared real clip when present)."""
    return write_small_real_mp4(tmp_path_factory.mktemp("video") / "small.mp4", height=32, width=32, num_frames=6)


def _frames(path: Path) -> list[np.ndarray]:
    return list(open_video(path).iter_frames())


def _start_held(args: list[str], hold_at: int, ready: Path) -> subprocess.Popen:
    """Start `vsrzoo upscale ARGS` that stops before chunk ``hold_at`` and writes ``ready`` there."""
    env = {**ENV, "HOLD_AT": str(hold_at), "READY": str(ready)}
    return subprocess.Popen([sys.executable, "-c", HELD_RUN, "upscale", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_held(proc: subprocess.Popen, ready: Path) -> None:
    deadline = time.monotonic() + 300
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its chunk: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run did not reach its chunk in time")
        time.sleep(0.02)


def _settled(read, expected, seconds: float = 60):  # noqa: ANN001, ANN202
    """``read()`` once it equals ``expected`` (or at the deadline): the encode thread of the pipelined path writes a
    finished chunk's frames and commit while the next chunk runs, so they land just after the hold point."""
    deadline = time.monotonic() + seconds
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.fixture(scope="module")
def runs(clip, weights, tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """The subprocess runs of this file, started together (most of each is Python importing torch; that runs in
    parallel on the CI's two cores, and so does the in-process work of :func:`reference` started next):
    ``{name: (process, its output folder)}``.

    ``SIGINT``: --frames, random weights, waits before chunk 1. ``SIGKILL``: --frames, weights, waits before
    chunk 2. ``fsize``: 4 frames to mp4 under a 1000-byte file size
    limit.
    """
    common = [*CHUNKS, "--device", "cpu", "--no-progress"]
    started: dict[str, tuple[subprocess.Popen, Path]] = {}
    for name, output, hold_at, net in (("SIGINT", "sr", 1, ["--frames", "--random-weights", "--variant", "tiny"]),
                                       ("SIGKILL", "sr", 2, ["--frames", "--weights", str(weights)])):
        folder = tmp_path_factory.mktemp(name)
        args = [str(clip), "-o", str(folder / output), *net, *common]
        started[name] = (_start_held(args, hold_at=hold_at, ready=folder.parent / f"{folder.name}.ready"), folder)
    folder = tmp_path_factory.mktemp("fsize")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "upscale", str(clip), "-o", str(folder / "sr.mp4"),
                             "--random-weights", "--variant", "tiny", *common, "--max-frames", "4"], env=ENV,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_file_size_limit)
    started["fsize"] = (proc, folder)
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def reference(runs, clip, weights, tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """Uninterrupted runs on the clip (in-process, while the subprocesses start): the decoded frames of --frames
    output and of mp4 output."""
    folder = tmp_path_factory.mktemp("reference")
    args = ["--weights", str(weights), *CHUNKS, "--device", "cpu", "--no-progress"]
    assert main(["upscale", str(clip), "-o", str(folder / "sr"), "--frames", *args]) == 0
    assert main(["upscale", str(clip), "-o", str(folder / "sr.mp4"), *args]) == 0
    return {"frames": _frames(folder / "sr"), "mp4": _frames(folder / "sr.mp4")}


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ 1. signals
def test_ctrl_c_mid_run_leaves_no_output_and_one_line(runs, reference) -> None:
    """Ctrl-C (SIGINT to the process) while frames are written: exit 130, one line, no output, no temporary output
    (random weights keep no finished chunks)."""
    proc, folder = runs["SIGINT"]
    _wait_held(proc, folder.parent / f"{folder.name}.ready")
    partial = list(folder.glob(f".sr.partial-{proc.pid}-*"))
    assert len(partial) == 1 and _settled(lambda: len(list(partial[0].iterdir())), 2) == 2  # 0, 1: final after chunk 0
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    line = _one_line(stderr)
    assert line.startswith("interrupted by SIGINT (Ctrl-C): no output written")
    assert list(folder.iterdir()) == []


def test_sigterm_mid_run_keeps_finished_chunks_and_says_so(clip, weights, tmp_path, capsys, monkeypatch) -> None:
    """SIGTERM (a real signal, here sent by the process to itself during chunk 1) while an mp4 with weights is
    written: exit 143, one line naming the work folder and --resume, no output, no temporary output."""
    original, calls = zoo.inference.upscale_tensor, [0]

    def terminated(*a, **k):  # noqa: ANN002, ANN003, ANN202
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        calls[0] += 1
        return original(*a, **k)

    monkeypatch.setattr(zoo.inference, "upscale_tensor", terminated)
    out = tmp_path / "sr.mp4"
    assert main(["upscale", str(clip), "-o", str(out), "--weights", str(weights), *CHUNKS, "--device", "cpu",
                 "--no-progress"]) == 143
    line = _one_line(capsys.readouterr().err)
    kept = work_folder(out)
    assert line.startswith("interrupted by SIGTERM: no output written") and "--resume" in line and str(kept) in line
    assert list(tmp_path.iterdir()) == [kept] and json.loads((kept / "manifest.json").read_text())["done"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the command


# ------------------------------------------------------------------------------------ 2 + 4. SIGKILL, --resume
def test_resume_after_sigkill_cleans_the_stale_partial_and_equals_an_uninterrupted_run(
        runs, clip, weights, reference, capsys, monkeypatch) -> None:
    """SIGKILL after 2 of 3 chunks leaves the temporary frames folder; the --resume run removes it (and only it),
    runs only the last 2 chunks and writes exactly the frames of an uninterrupted run."""
    proc, tmp_path = runs["SIGKILL"]
    _wait_held(proc, tmp_path.parent / f"{tmp_path.name}.ready")
    out = tmp_path / "sr"
    args = [str(clip), "-o", str(out), "--frames", "--weights", str(weights), *CHUNKS, "--device", "cpu",
            "--no-progress"]
    partials = list(tmp_path.glob(f".sr.partial-{proc.pid}-*"))
    assert len(partials) == 1 and partials[0].is_dir()
    assert _settled(lambda: len(list(partials[0].iterdir())), 4) == 4  # chunks 0, 1
    _settled(lambda: json.loads((work_folder(out) / "manifest.json").read_text())["done"], 2)
    manifest = json.loads((work_folder(out) / "manifest.json").read_text())
    assert manifest["done"] == 2 and manifest["final_frames"] == 4 and len(manifest["plan"]) == CHUNK_COUNT
    proc.kill()
    proc.wait()
    assert partials[0].exists()  # a SIGKILL leaves it
    # look-alikes the clean-up must leave: a live process's (pid 1), another output's, an unknown form
    keep = [tmp_path / ".sr.partial-1-0123abcd", tmp_path / f".other.partial-{proc.pid}-0123abcd",
            tmp_path / ".sr.partial-0123abcd"]
    for path in keep:
        path.mkdir()

    calls = []
    original = zoo.inference.upscale_tensor

    def counted(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(k["first_frame"])
        return original(*a, **k)

    monkeypatch.setattr(zoo.inference, "upscale_tensor", counted)
    assert main(["upscale", *args, "--resume"]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert f"resumed after 2 of {CHUNK_COUNT} chunks" in captured.out
    assert calls == [start for start, _ in manifest["plan"][2:]]  # only the chunks not finished
    assert not partials[0].exists(), partials
    assert all(path.exists() for path in keep), [(p.name, p.exists()) for p in keep]
    assert not work_folder(out).exists()
    written = _frames(out)
    assert len(written) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(written, reference["frames"], strict=True)), [int(np.abs(a.astype(int) - b).max()) for a, b in zip(written, reference["frames"])]


def test_resume_of_an_mp4_run_refusals_and_fresh_start(clip, weights, reference, tmp_path, capsys,
                                                       monkeypatch) -> None:
    """A run stopped (Ctrl-C in-process) after 2 chunks; --resume with other settings is refused and keeps the
    work folder; --resume continues to the uninterrupted run's frames; without --resume a run starts again."""
    out = tmp_path / "sr.mp4"
    args = [str(clip), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--no-progress"]
    original = zoo.inference.upscale_tensor

    def interrupt_at(chunk: int) -> None:
        calls = [0]

        def stopping(*a, **k):  # noqa: ANN002, ANN003, ANN202
            if calls[0] == chunk:
                raise KeyboardInterrupt
            calls[0] += 1
            return original(*a, **k)

        monkeypatch.setattr(zoo.inference, "upscale_tensor", stopping)
        assert main(["upscale", *args, *CHUNKS]) == 130
        line = _one_line(capsys.readouterr().err)
        assert "--resume" in line and not out.exists() and not list(tmp_path.glob(".*partial*"))
        monkeypatch.setattr(zoo.inference, "upscale_tensor", original)

    interrupt_at(2)
    assert main(["upscale", *args, "--chunk-frames", "5", "--overlap", "1", "--resume"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: cannot resume") and "chunk_frames" in line
    assert json.loads((work_folder(out) / "manifest.json").read_text())["done"] == 2

    assert main(["upscale", *args, *CHUNKS, "--resume"]) == 0
    assert f"resumed after 2 of {CHUNK_COUNT} chunks" in capsys.readouterr().out
    assert not work_folder(out).exists()
    written = _frames(out)
    assert len(written) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(written, reference["mp4"], strict=True))

    out.unlink()
    interrupt_at(1)
    assert main(["upscale", *args, *CHUNKS, "--max-frames", "4"]) == 0  # other settings: without --resume, fine
    captured = capsys.readouterr()
    assert "removing the unfinished run" in captured.err and "resumed" not in captured.out
    assert not work_folder(out).exists() and open_video(out).num_frames == 4


def test_clean_stale_partials_removes_only_dead_writers_of_that_output(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "a.mp4"
    stale = [tmp_path / f".a.mp4.partial-{dead.pid}-0123abcd.mp4", tmp_path / f".a.mp4.partial-{dead.pid}-89abcdef"]
    kept = [tmp_path / f".a.mp4.partial-{os.getpid()}-0123abcd.mp4", tmp_path / ".a.mp4.partial-1-0123abcd.mp4",
            tmp_path / f".b.mp4.partial-{dead.pid}-0123abcd.mp4", tmp_path / f".a.mp4.partial-{dead.pid}-xyz.mp4",
            tmp_path / "a.mp4"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(clean_stale_partials(out)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


# ---------------------------------------------------------------------------------------------- 3. full disk
def test_file_size_limit_while_writing_the_mp4_is_one_line(runs) -> None:
    """`ulimit -f` (RLIMIT_FSIZE) reached while FFmpeg writes the mp4: one line, exit 1, nothing left."""
    proc, folder = runs["fsize"]
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    line = _one_line(stderr)
    assert line.startswith("error: no space left on device") and str(folder / "sr.mp4") in line
    assert list(folder.iterdir()) == []  # no output, no partial output


def test_full_disk_errnos_give_the_same_line(clip, weights, tmp_path, capsys, monkeypatch) -> None:
    """Out of space (ENOSPC), over quota (EDQUOT), over the size limit (EFBIG) while keeping a finished chunk in
    the work folder: the same line, exit 1, nothing left."""
    out = tmp_path / "sr.mp4"
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        def full(self, index, frame, code=code):  # noqa: ANN001, ANN202
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(zoo.inference._WorkFolder, "add_frame", full)
        assert main(["upscale", str(clip), "-o", str(out), "--weights", str(weights), "--max-frames", "2",
                     "--device", "cpu", "--no-progress"]) == 1
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"error: no space left on device (or disk quota / file size limit reached) while "
                               f"writing {out} ({os.strerror(code)}); no partial output is left")
        assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------- 5. refusals
REFUSALS = {
    "output_is_a_folder": ([], "is a folder"),
    "output_parent_is_a_file": ([], "is a file, not a folder"),
    "output_links_to_the_input": ([], "would overwrite the input"),
    "chunk_frames_0": (["--chunk-frames", "0"], "--chunk-frames must be a positive"),
    "chunk_frames_negative": (["--chunk-frames", "-3"], "--chunk-frames must be a positive"),
    "overlap_not_below_chunk": (["--chunk-frames", "4", "--overlap", "4"], "--overlap 4 must be smaller than"),
    "overlap_negative": (["--overlap", "-1"], "--overlap must be 0 or more"),
    "tile_not_above_overlap": (["--tile", "16", "--tile-overlap", "16"], "--tile-overlap 16 must be smaller"),
    "tile_overlap_negative": (["--tile", "16", "--tile-overlap", "-2"], "--tile-overlap must be 0 or more"),
    "tile_negative": (["--tile", "-16"], "--tile must be 0"),
    "max_frames_0": (["--max-frames", "0"], "--max-frames must be a positive"),
    "cuda_missing": (["--device", "cuda"], "CUDA is not available"),
    "cuda_3_missing": (["--device", "cuda:3"], "cuda:3"),
    "not_a_device": (["--device", "gpu7"], "not a device"),
    "fp16_on_cpu": (["--device", "cpu", "--dtype", "fp16"], "fp16"),
    "compile_unknown_mode": (["--compile", "fastest"], "compile mode must be one of"),
    "resume_random_weights": (["--resume"], "--resume continues a run with --weights"),
    "stats_is_a_folder": (["--stats", "."], "--stats .: is a folder"),
    "stats_folder_missing": (["--stats", "no_such_folder/run.json"], "does not exist"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_before_loading_with_one_line(case, video, tmp_path, capsys, monkeypatch) -> None:
    if case == "cuda_missing" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == "cuda_3_missing" and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")

    def no_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(zoo.hub, "load_pretrained", no_load)
    extra, expected = REFUSALS[case]
    source, out = video, tmp_path / "sr.mp4"
    if case == "output_is_a_folder":
        out.mkdir()
    elif case == "output_parent_is_a_file":
        (tmp_path / "notes").write_text("a file")
        out = tmp_path / "notes" / "sr.mp4"
    elif case == "output_links_to_the_input":
        out.symlink_to(source)
    before = sorted(tmp_path.rglob("*"))
    argv = ["upscale", str(source), "-o", str(out), "--random-weights", "--variant", "tiny", "--no-progress", *extra]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and expected in line, line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


# -------------------------------------------------------------------------------------------------- 6. batch
def test_batch_over_a_library_skips_existing_and_reports_a_corrupt_input(clip, video, tmp_path, capsys) -> None:
    library, out = tmp_path / "library", tmp_path / "sr"
    library.mkdir()
    (library / "a.mp4").write_bytes(video.read_bytes())
    _crop_clip(library / "b_clip", 3, top=200, left=300)
    (library / "broken.mp4").write_bytes(video.read_bytes()[:300])
    (library / "c.mp4").write_bytes(video.read_bytes())
    argv = ["upscale", str(library), "-o", str(out), "--random-weights", "--variant", "tiny", "--max-frames", "3",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    failed = captured.err.strip().splitlines()
    assert len(failed) == 1 and "broken.mp4: failed:" in failed[0] and "Traceback" not in captured.err
    assert "batch: 3 written, 0 skipped (exist), 1 failed, of 4 inputs" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b_clip.mp4", "c.mp4"]
    for name in ("a.mp4", "b_clip.mp4", "c.mp4"):
        written = open_video(out / name)
        assert (written.num_frames, written.width, written.height) == (3, 128, 128)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert main(argv) == 1  # the broken input still fails; the others are done already
    captured = capsys.readouterr()
    assert captured.out.count("skipped (exists)") == 3
    assert "batch: 0 written, 3 skipped (exist), 1 failed, of 4 inputs" in captured.out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_batch_from_a_text_list_with_frames_and_overwrite(clip, video, tmp_path, capsys) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.mp4").write_bytes(video.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two inputs\n\nvideos/v.mp4\n  {clip}  \n")
    out = tmp_path / "sr"
    argv = ["upscale", str(listing), "-o", str(out), "--frames", "--random-weights", "--variant", "tiny",
            "--max-frames", "2", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    assert "batch: 2 written, 0 skipped (exist), 0 failed, of 2 inputs" in capsys.readouterr().out
    assert len(list((out / "v").glob("*.png"))) == 2 and len(list((out / "clip").glob("*.png"))) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert "batch: 2 written, 0 skipped" in capsys.readouterr().out
