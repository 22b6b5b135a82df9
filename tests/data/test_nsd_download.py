"""download nsd: against a local HTTP server serving the NSD fixture, a connection cut halfway included."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fmri_data import cli, nsd_download
from fmri_data.errors import DataError
from fmri_data.loaders import nsd
from fmri_data.nsd_download import MANIFEST, download_nsd, nsd_files, parse_sessions

STIMULI = "/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"


class _Bucket(BaseHTTPRequestHandler):
    """Serves a folder with HTTP ranges; a path in `cut` loses its connection halfway through, once."""

    def __init__(self, *args, root: Path, requests: list, cut: set, **kwargs) -> None:
        self.root, self.requests, self.cut = root, requests, cut
        super().__init__(*args, **kwargs)

    ranges = True  # False: the server ignores range requests and sends whole files
    misstated = 0  # added to the first byte a range answer says it starts at

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self.requests.append((self.command, self.path, self.headers.get("Range")))
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        asked = self.headers["Range"] if _Bucket.ranges else None
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        self.send_response(206 if start else 200)
        if start:
            said = start + _Bucket.misstated
            self.send_header("Content-Range", f"bytes {said}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        if self.path in self.cut:
            self.cut.discard(self.path)
            self.wfile.write(data[start : len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bucket(tmp_path, write_nsd_layout):
    """(url, requests, cut, served folder): the tiny NSD with captions, served on 127.0.0.1."""
    served = tmp_path / "bucket"
    write_nsd_layout(served, captions=True)
    requests, cut = [], set()
    handler = partial(_Bucket, root=served, requests=requests, cut=cut)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests, cut, served
    server.shutdown()
    server.server_close()
    _Bucket.ranges, _Bucket.misstated = True, 0


def _get(url: str, root: Path) -> Path:
    return download_nsd(root, 1, [1, 2], base_url=url, progress=False)


def test_a_cut_download_resumes_and_the_files_load(bucket, tmp_path, monkeypatch):
    url, requests, cut, served = bucket
    cut.add(STIMULI)
    root = tmp_path / "nsd"
    with pytest.raises(DataError, match="run the same command again"):
        _get(url, root)
    stimuli = root / STIMULI.lstrip("/")
    assert not stimuli.exists()  # a partial file never takes the real name
    hidden = stimuli.with_name(f".{stimuli.name}.partial")
    assert 0 < hidden.stat().st_size < (served / STIMULI.lstrip("/")).stat().st_size
    have, before = hidden.stat().st_size, len(requests)
    _get(url, root)
    assert [r for r in requests[before:] if r[0] == "GET"] == [("GET", STIMULI, f"bytes={have}-")]
    for path in nsd_files(1, [1, 2]):
        assert (root / path).read_bytes() == (served / path).read_bytes(), path
    assert set(json.loads((root / MANIFEST).read_text())["sha256"]) == set(nsd_files(1, [1, 2]))
    assert not list(root.rglob(".*.partial"))
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    assert nsd.load_nsd(root, 1).n_trials == 12


def test_a_later_run_verifies_and_fetches_nothing(bucket, tmp_path):
    url, requests, _, _ = bucket
    root = _get(url, tmp_path / "nsd")
    before = len(requests)
    _get(url, root)
    assert requests[before:] == []  # every file there and matching its recorded checksum
    design = root / nsd_files(1, [1])[0]
    design.write_bytes(design.read_bytes()[:-1] + b"x")
    with pytest.raises(DataError, match=f"recorded in {MANIFEST}"):
        _get(url, root)


def test_too_little_disk_space_is_refused_before_any_download(bucket, tmp_path, monkeypatch):
    url, requests, _, _ = bucket
    monkeypatch.setattr(nsd_download.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 10**6})())
    with pytest.raises(DataError, match="GB free"):
        _get(url, tmp_path / "nsd")
    assert {method for method, _, _ in requests} == {"HEAD"}
    assert not (tmp_path / "nsd" / "nsddata").exists()


def test_a_session_the_server_lacks_fails_before_any_download(bucket, tmp_path):
    url, requests, _, _ = bucket
    with pytest.raises(DataError, match=r"cannot reach .*betas_session03"):
        download_nsd(tmp_path / "nsd", 1, [3], base_url=url, progress=False)
    assert "GET" not in {method for method, _, _ in requests}


def test_sessions_and_subjects_are_checked():
    assert parse_sessions("1-3,7,2") == [1, 2, 3, 7]
    for text in ("first", "5-1", "1-3,5-1"):
        with pytest.raises(DataError, match="sessions must look like"):
            parse_sessions(text)
    with pytest.raises(DataError, match="sessions 1-30, not"):
        nsd_files(4, [31])
    with pytest.raises(DataError, match="subjects 1-8"):
        nsd_files(9, [1])


def test_the_command_line(bucket, tmp_path, capsys):
    url, *_ = bucket
    argv = ["download", "nsd", "--subject", "1", "--sessions", "1-2", "--root", str(tmp_path / "r")]
    assert cli.main([*argv, "--base-url", url]) == 0
    assert "--nsd-root" in capsys.readouterr().out
    assert (tmp_path / "r" / MANIFEST).is_file()


def test_a_server_that_ignores_ranges_sends_the_file_again(bucket, tmp_path):
    url, _, cut, served = bucket
    cut.add(STIMULI)
    with pytest.raises(DataError, match="run the same command again"):
        _get(url, tmp_path / "nsd")
    _Bucket.ranges = False
    _get(url, tmp_path / "nsd")
    assert (tmp_path / "nsd" / STIMULI.lstrip("/")).read_bytes() == (
        served / STIMULI.lstrip("/")
    ).read_bytes()


def test_files_it_did_not_download_are_trusted_only_at_the_right_size(bucket, tmp_path):
    url, requests, _, served = bucket
    root = tmp_path / "nsd"
    design, stimuli = nsd_files(1, [1])[0], STIMULI.lstrip("/")
    for path, size in ((design, None), (stimuli, 100)):  # an earlier copy, and a download cut by another tool
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes((served / path).read_bytes()[:size])
    _get(url, root)
    assert ("GET", f"/{stimuli}", "bytes=100-") in requests  # continued, not trusted
    assert ("GET", f"/{design}", None) not in requests  # the right size: recorded as it is
    assert (root / stimuli).read_bytes() == (served / stimuli).read_bytes()


def test_optional_files_a_mirror_lacks_are_skipped(bucket, tmp_path):
    url, _, _, served = bucket
    optional = sorted(nsd_download.OPTIONAL)
    for path in optional:
        (served / path).unlink()
    root = _get(url, tmp_path / "nsd")
    assert not any((root / path).exists() for path in optional)
    assert (root / STIMULI.lstrip("/")).is_file()


def test_a_range_answer_from_another_byte_restarts_the_file(bucket, tmp_path):
    url, requests, cut, served = bucket
    cut.add(STIMULI)
    root = tmp_path / "nsd"
    with pytest.raises(DataError, match="run the same command again"):
        _get(url, root)
    _Bucket.misstated = 1
    with pytest.raises(DataError, match="answered from another byte than asked; run again") as error:
        _get(url, root)
    assert "continue it" not in str(error.value)  # one message, not two
    _Bucket.misstated, before = 0, len(requests)
    _get(url, root)
    assert ("GET", STIMULI, None) in requests[before:]  # started again from the first byte
    assert (root / STIMULI.lstrip("/")).read_bytes() == (served / STIMULI.lstrip("/")).read_bytes()
