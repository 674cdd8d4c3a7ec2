"""``vsrzoo weights list | download | verify`` against a local HTTP server (127.0.0.1 only, no outside network).

The catalogue is replaced by entries pointing at the local server (``zoo.weights_command.catalogue``), except for the
test that ``list`` shows every real entry; ``TORCH_HOME`` points into ``tmp_path``.
"""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from zoo import weights_command
from zoo.catalogue import WeightFile
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.hub import FAMILIES, weight_files

BODY = bytes(range(256)) * 64  # 16 KiB
SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        if self.path.startswith("/good"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/short":  # announces more bytes than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + 1000))
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _use(monkeypatch, *entries: WeightFile) -> None:
    monkeypatch.setattr(weights_command, "catalogue", lambda: {entry.name: entry for entry in entries})


def _file(server: str, name: str, path: str = "/good", **fields: object) -> WeightFile:
    fields.setdefault("filename", f"{name}.bin")
    return WeightFile(name=name, kind="file", url=server + path, source="local test server", license="test",
                      used_by="tests", **fields)


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_is_downloaded_verified_and_renamed(server, torch_home, monkeypatch, capsys):
    entry = _file(server, "good", filename=f"good-{SHA[:8]}.bin", hash_prefix=SHA[:8], size=len(BODY))
    _use(monkeypatch, entry)
    assert main(["weights", "download", "good", "--no-progress"]) == 0
    target = torch_home / "hub" / "checkpoints" / entry.filename
    assert target.read_bytes() == BODY
    assert _files(target.parent) == [entry.filename]  # the temporary name is gone
    assert "downloaded" in capsys.readouterr().out
    assert main(["weights", "verify", "good"]) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_present_and_verified_file_is_not_downloaded_again(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "again", sha256=SHA))
    assert main(["weights", "download", "again", "--no-progress"]) == 0
    count = len(_Handler.requests)
    assert main(["weights", "download", "again", "--no-progress"]) == 0
    assert len(_Handler.requests) == count
    assert "not downloaded again" in capsys.readouterr().out


def test_download_dir_option(server, tmp_path, torch_home, monkeypatch):
    _use(monkeypatch, _file(server, "elsewhere", sha256=SHA))
    assert main(["weights", "download", "elsewhere", "--dir", str(tmp_path / "mine"), "--no-progress"]) == 0
    assert (tmp_path / "mine" / "elsewhere.bin").read_bytes() == BODY
    assert not (torch_home / "hub" / "checkpoints").exists()


def test_wrong_hash_is_refused_and_nothing_is_left(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "wrong", sha256="0" * 64))
    assert main(["weights", "download", "wrong", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: wrong: downloaded file refused (sha256") and "\n" not in err
    assert _files(torch_home / "hub" / "checkpoints") == []


def test_wrong_size_is_refused(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "size", size=len(BODY) - 1))
    assert main(["weights", "download", "size", "--no-progress"]) == 2
    assert "bytes, expected" in capsys.readouterr().err
    assert _files(torch_home / "hub" / "checkpoints") == []


def test_truncated_transfer_leaves_nothing(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "short", path="/short"))  # no size or hash recorded: only the byte count
    assert main(["weights", "download", "short", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and f"{len(BODY)} of {len(BODY) + 1000} bytes" in err and "\n" not in err
    assert _files(torch_home / "hub" / "checkpoints") == []


def test_http_error_is_one_line(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "gone", path="/missing"))
    assert main(["weights", "download", "gone", "--no-progress"]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert _files(torch_home / "hub" / "checkpoints") == []


def test_interrupted_download_leaves_nothing(server, torch_home, monkeypatch):
    _use(monkeypatch, _file(server, "interrupted", sha256=SHA))

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_command, "_check_file", interrupt)  # after the bytes are on disk, before the rename
    with pytest.raises(KeyboardInterrupt):
        main(["weights", "download", "interrupted", "--no-progress"])
    assert _files(torch_home / "hub" / "checkpoints") == []


def test_verify_reports_bad_for_a_corrupted_file(server, torch_home, monkeypatch, capsys):
    _use(monkeypatch, _file(server, "corrupt", sha256=SHA), _file(server, "absent", sha256=SHA))
    assert main(["weights", "download", "corrupt", "--no-progress"]) == 0
    path = torch_home / "hub" / "checkpoints" / "corrupt.bin"
    path.write_bytes(b"\xff" + BODY[1:])
    capsys.readouterr()
    assert main(["weights", "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("BAD") and "corrupt" in lines[0] and "sha256" in lines[0]
    assert lines[1].startswith("MISSING") and "absent" in lines[1]
    # download replaces a BAD file with a verified one
    assert main(["weights", "download", "corrupt", "--no-progress"]) == 0
    assert path.read_bytes() == BODY


def test_unknown_name_is_one_line_exit_2(torch_home, capsys):
    assert main(["weights", "download", "no_such_weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown weights 'no_such_weights'") and "\n" not in err
    assert main(["weights", "verify", "no_such_weights"]) == 2


def test_list_shows_every_catalogue_entry(torch_home, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| name | kind | size | license | present | local path | source |"
    catalogue = weight_files()
    for name, entry in catalogue.items():
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        assert str(entry.path()) in row and entry.license in row
    assert str(torch_home / "hub" / "checkpoints" / "raft_large_C_T_SKHT_V2-ff5fadd5.pth") in out
    assert str(torch_home / "hub" / "vsrzoo" / "stable-diffusion-x4-upscaler") in out


def test_catalogue_covers_the_shared_and_released_files():
    catalogue = weight_files()
    assert {"raft_large", "alexnet", "vgg19", "spynet", "realbasicvsr_x4", "realesrgan_x4plus", "realesr_animevideov3",
            "sd_x4_upscaler", "sd21_base", "svd_img2vid", "dc_vsr_unet_ema", "upscale_a_video"} <= set(catalogue)
    for entry in catalogue.values():
        assert entry.url.startswith("https://") if entry.kind == "file" else not entry.url
        assert entry.source and entry.license
    assert catalogue["svd_img2vid"].gated
    assert all(catalogue[name].hash_prefix for name in ("raft_large", "alexnet", "vgg19", "spynet"))
    assert {entry.name for spec in FAMILIES.values() for entry in spec.files} <= set(catalogue)


def test_weight_file_refuses_a_hash_prefix_that_is_not_in_its_name():
    with pytest.raises(ConfigError, match="hash_prefix"):
        WeightFile(name="x", kind="file", filename="x-12345678.pth", url="https://example.invalid/x",
                   source="-", license="-", used_by="-", hash_prefix="87654321")


def test_manual_entry_prints_where_to_get_it_and_where_to_put_it(torch_home, monkeypatch, capsys):
    entry = FAMILIES["upscale_a_video"].files[0]
    assert entry.kind == "manual"
    assert main(["weights", "download", entry.name]) == 0
    out = capsys.readouterr().out
    assert "drive.google.com" in out and str(torch_home / "hub" / "vsrzoo" / "upscale_a_video") in out
    assert "MISSING" in out


def test_hf_folder_goes_through_snapshot_download(torch_home, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id, *, local_dir, allow_patterns=None):
        calls.append((repo_id, local_dir, allow_patterns))
        for name in ("model_index.json", "sub/config.json"):
            (torch_home / "hub" / "vsrzoo" / "tiny-repo" / name).parent.mkdir(parents=True, exist_ok=True)
            (torch_home / "hub" / "vsrzoo" / "tiny-repo" / name).write_text("{}")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    _use(monkeypatch, WeightFile(name="tiny_repo", kind="hf_folder", filename="tiny-repo", repo_id="someone/tiny",
                                 source="-", license="-", used_by="-", required=("model_index.json", "sub/config.json")))
    assert main(["weights", "verify", "tiny_repo"]) == 0  # MISSING is not BAD
    assert main(["weights", "download", "tiny_repo"]) == 0
    assert calls == [("someone/tiny", str(torch_home / "hub" / "vsrzoo" / "tiny-repo"), list(WeightFile.allow_patterns))]
    assert main(["weights", "download", "tiny_repo"]) == 0
    assert len(calls) == 1 and "not downloaded again" in capsys.readouterr().out
    (torch_home / "hub" / "vsrzoo" / "tiny-repo" / "sub" / "config.json").unlink()
    assert main(["weights", "verify", "tiny_repo"]) == 1
    assert "incomplete: sub/config.json missing" in capsys.readouterr().out


def test_hub_dir_follows_torchs_rule(tmp_path, monkeypatch):
    """Without torch loaded, the catalogue's folder is torch.hub.get_dir()'s by the same rule (TORCH_HOME, then
    XDG_CACHE_HOME); with torch loaded it is torch's answer."""
    import sys
    from pathlib import Path

    import torch.hub

    from zoo.catalogue import hub_dir

    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        expected = Path(torch.hub.get_dir())
        assert hub_dir() == expected
        with monkeypatch.context() as patch:
            patch.delitem(sys.modules, "torch.hub")
            assert hub_dir() == expected


def test_missing_weights_messages_name_the_download_command(tmp_path, monkeypatch):
    import torch

    from zoo.errors import WeightsError
    from zoo.hub import load_pretrained
    from zoo.metrics.temporal import _raft_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="`vsrzoo weights download raft_large` fetches them"):
        _raft_model(torch.device("cpu"))
    with pytest.raises(WeightsError, match="vsrzoo weights download realesrgan_x4plus"):
        load_pretrained("realesrgan", tmp_path / "RealESRGAN_x4plus.pth")
    with pytest.raises(WeightsError, match="vsrzoo weights download svd_img2vid"):
        from zoo.models.dc_vsr.load import check_svd_folder

        check_svd_folder(tmp_path / "no_svd")
