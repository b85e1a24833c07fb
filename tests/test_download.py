"""xpnet.download.fetch against a local HTTP server: verified files, resumed cuts, mirrors,
wrong checksums, stalls, no network, and two processes fetching into one folder at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataset_server import FileServer, md5

from xpnet.download import DownloadError, Source, fetch, md5_of, sources_for, sources_override
from xpnet.errors import DataError

PAYLOAD = os.urandom(300_000)
FAST = {"timeout": 2.0, "backoff": 0.01}


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_downloads_verifies_and_then_uses_the_copy(server, tmp_path):
    server.files["a/f.bin"] = PAYLOAD
    source = Source("f.bin", (server.url("a/f.bin"),), md5(PAYLOAD))
    path = fetch(source, tmp_path / "cache", **FAST)
    assert path == tmp_path / "cache" / "f.bin" and path.read_bytes() == PAYLOAD
    assert leftovers(path.parent) == []
    assert fetch(source, tmp_path / "cache", **FAST) == path
    assert server.count("a/f.bin") == 1  # the verified copy is used, not downloaded again


def test_a_cut_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    server.cut_after["f.bin"] = 100_000
    path = fetch(Source("f.bin", (server.url("f.bin"),), md5(PAYLOAD)), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("f.bin", None), ("f.bin", "bytes=100000-")]
    assert leftovers(tmp_path) == []


def test_a_wrong_checksum_is_refused_and_the_temporary_file_removed(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    with pytest.raises(DownloadError) as info:
        fetch(Source("f.bin", (server.url("f.bin"),), "0" * 32), tmp_path, **FAST,
              by_hand="place it by hand")
    message = str(info.value)
    assert "\n" not in message and f"MD5 {md5(PAYLOAD)}, expected {'0' * 32}" in message
    assert server.url("f.bin") in message and message.endswith("; place it by hand")
    assert list(tmp_path.iterdir()) == [tmp_path / ".f.bin.lock"]  # no .part, no f.bin


def test_404_on_the_first_mirror_uses_the_next(server, tmp_path):
    server.files["two/f.bin"] = PAYLOAD
    urls = (server.url("one/f.bin"), server.url("two/f.bin"))
    path = fetch(Source("f.bin", urls, md5(PAYLOAD)), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["one/f.bin", "two/f.bin"]  # no retry of a 404


def test_a_stalled_server_times_out_in_one_line(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    server.stall.add("f.bin")
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(Source("f.bin", (server.url("f.bin"),), md5(PAYLOAD)), tmp_path, timeout=0.3,
              attempts=2, backoff=0.01)
    assert time.monotonic() - started < 5
    assert "\n" not in str(info.value) and "timed out" in str(info.value)
    assert server.count("f.bin") == 2 and leftovers(tmp_path) == []


def test_no_network_names_the_url_and_how_to_place_the_file(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/f.bin"
    with pytest.raises(DownloadError) as info:
        fetch(Source("f.bin", (url,), "0" * 32), tmp_path, **FAST, by_hand="download it into X")
    message = str(info.value)
    assert "\n" not in message and url in message and "refused" in message.lower()
    assert message.endswith("download it into X")


def test_a_server_that_ignores_range_replaces_the_partial_file(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    server.cut_after["f.bin"] = 100_000
    server.ignore_range.add("f.bin")
    path = fetch(Source("f.bin", (server.url("f.bin"),), md5(PAYLOAD)), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD  # the 200 answer was written from byte 0, not appended
    assert server.requests == [("f.bin", None), ("f.bin", "bytes=100000-")]


def test_a_stale_partial_file_is_dropped_after_a_wrong_checksum(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    (tmp_path / ".f.bin.part").write_bytes(b"stale bytes of another version")
    path = fetch(Source("f.bin", (server.url("f.bin"),), md5(PAYLOAD)), tmp_path, **FAST)
    # resuming the stale .part gives a wrong MD5: the .part goes, and the file comes from byte 0
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("f.bin", "bytes=30-"), ("f.bin", None)]


def test_a_file_already_there_with_another_checksum_is_not_overwritten(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"the user's own file")
    with pytest.raises(DataError, match=r"has MD5 .* not the published .*delete it"):
        fetch(Source("f.bin", ("http://127.0.0.1:9/f.bin",), "0" * 32), tmp_path, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == b"the user's own file"


def test_progress_bar_on_request(server, tmp_path, capsys):
    server.files["f.bin"] = PAYLOAD
    fetch(Source("f.bin", (server.url("f.bin"),), md5(PAYLOAD)), tmp_path, progress=True, **FAST)
    assert "f.bin" in capsys.readouterr().err  # tqdm's bar, described by the file name


_FETCH_IN_A_PROCESS = """
import sys
from xpnet.download import Source, fetch
print(fetch(Source("f.bin", (sys.argv[1],), sys.argv[2]), sys.argv[3], timeout=10).name)
"""


def test_two_processes_fetching_into_one_folder_end_with_the_same_verified_file(server, tmp_path):
    server.files["f.bin"] = PAYLOAD
    server.chunk_delay["f.bin"] = 0.005  # ~0.4 s per download: the two overlap
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", _FETCH_IN_A_PROCESS, server.url("f.bin"), md5(PAYLOAD),
            str(tmp_path / "cache")]
    processes = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    assert [out.strip() for out, _ in results] == ["f.bin", "f.bin"]
    assert md5_of(tmp_path / "cache" / "f.bin") == md5(PAYLOAD)
    assert leftovers(tmp_path / "cache") == []
    if sys.platform != "win32":  # with the lock, the second process finds the first's file
        assert server.count("f.bin") == 1


def test_sources_from_the_environment(tmp_path, monkeypatch):
    table = {"kmnist": {"t10k-labels-idx1-ubyte.gz": {"urls": ["http://mirror/x.gz"],
                                                      "md5": "a" * 32}}}
    (tmp_path / "sources.json").write_text(json.dumps(table))
    monkeypatch.setenv("XPNET_DATASET_SOURCES", str(tmp_path / "sources.json"))
    assert sources_override("cifar10") is None
    parsed = sources_for((Source("t10k-labels-idx1-ubyte.gz", ("http://official/",), "b" * 32),
                          Source("other", ("http://official/o",), "c" * 32)), "kmnist", None)
    assert parsed["t10k-labels-idx1-ubyte.gz"] == Source("t10k-labels-idx1-ubyte.gz",
                                                         ("http://mirror/x.gz",), "a" * 32)
    assert parsed["other"].urls == ("http://official/o",)


@pytest.mark.parametrize("content, match", [
    ("{not json", r"not a readable JSON file"),
    ('{"kmnist": {"f": {"urls": [], "md5": "x"}}}', r"entry 'f' must be"),
])
def test_bad_sources_file_is_one_line(tmp_path, monkeypatch, content, match):
    (tmp_path / "sources.json").write_text(content)
    monkeypatch.setenv("XPNET_DATASET_SOURCES", str(tmp_path / "sources.json"))
    with pytest.raises(DataError, match=match) as info:
        sources_override("kmnist")
    assert "\n" not in str(info.value)


def test_sources_for_unknown_files_are_refused():
    with pytest.raises(DataError, match=r"name files it does not have: nope"):
        sources_for((Source("f", ("u",), "a" * 32),), "kmnist",
                    {"nope": {"urls": ["u"], "md5": "a" * 32}})
