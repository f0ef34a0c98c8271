"""s3lib.download: the data registry, resumable verified downloads and safe unpacking.

Everything is served by a small HTTP server on 127.0.0.1 started here (it honours ``Range``,
and can break a transfer off, ignore ``Range``, or answer with an error); the archives and the
manifest are made by the tests. Nothing touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from s3lib import download as D
from s3lib.data.sintel import SintelFlow
from test_sintel import make_tree


# ----------------------------------------------------------------------------- the server
class Handler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support and switchable misbehaviour (see :class:`Server`)."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        state: Server = self.server.state
        path = self.path.lstrip("/")
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
            truncate = path in state.truncate_once
            state.truncate_once.discard(path)
        data = state.files.get(path)
        if not truncate and path in state.fail:
            self.send_error(state.fail[path])
            return
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if truncate:  # announce everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_once: set[str] = set()
        self.fail: dict[str, int] = {}
        self.ignore_range = False
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = Server()
    yield srv
    srv.close()


# ----------------------------------------------------------------------------- helpers
def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sintel_zip(tmp_path: Path) -> bytes:
    """A small MPI-Sintel-complete.zip: training/ and test/ at the top, as the real one."""
    tree = make_tree(tmp_path / "sintel-src")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(tree.rglob("*")):
            zf.write(path, path.relative_to(tree).as_posix())
        zf.writestr("README.txt", "MPI-Sintel, test copy\n")
    return buf.getvalue()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_manifest(tmp_path: Path, entries: dict[str, list[dict]]) -> Path:
    path = tmp_path / "manifest.json"
    manifest = {"_comment": "test manifest"}
    for name, files in entries.items():
        manifest[name] = {"title": name, "files": files}
    path.write_text(json.dumps(manifest))
    return path


def serve(server: Server, filename: str, data: bytes, checksum="md5", mirrors=(), path=None):
    """Serve ``data`` and return its manifest file entry."""
    path = path or filename
    server.files[path] = data
    spec = {"filename": filename, "url": server.url(path),
            "mirrors": [server.url(m) for m in mirrors], "md5": None}
    if checksum == "md5":
        spec["md5"] = md5(data)
    elif checksum == "sha256":
        spec["sha256"] = hashlib.sha256(data).hexdigest()
    return spec


def tree_listing(base: Path) -> set[str]:
    """Every path under ``base`` (files, folders, links), relative."""
    out = set()
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(folder, name), base))
    return out


def files_under(base: Path) -> list[Path]:
    return [p for p in base.rglob("*") if not p.is_dir()] if base.exists() else []


@pytest.fixture
def sintel(server, tmp_path):
    """(manifest path, data root, zip bytes) for a served Sintel zip with its md5."""
    data = sintel_zip(tmp_path)
    manifest = write_manifest(tmp_path, {"sintel": [serve(server, "MPI-Sintel-complete.zip",
                                                          data)]})
    return manifest, tmp_path / "data", data


# ----------------------------------------------------------------------------- success
def test_download_sintel_end_to_end(server, sintel):
    manifest, root, data = sintel
    out = D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert out == root / "sintel"
    assert server.requests == [("MPI-Sintel-complete.zip", None)]
    assert (out / "training" / "clean" / "alley_1" / "frame_0001.png").is_file()
    assert (out / "test" / "clean" / "ambush_1").is_dir()
    assert (out / "README.txt").read_text() == "MPI-Sintel, test copy\n"
    assert len(SintelFlow(out)) == 5 and len(SintelFlow(root, pass_name="final")) == 5
    marker = json.loads((out / D.MARKER).read_text())
    assert marker["complete"] is True and marker["files"][0]["md5"] == md5(data)
    assert marker["files"][0]["size"] == len(data)
    # no archive, partial file or temporary folder is left behind
    assert sorted(p.name for p in out.iterdir()) == [D.MARKER, "README.txt", "test", "training"]
    assert D.is_complete("sintel", root=root, manifest=manifest)


def test_second_run_is_a_no_op_without_network(server, sintel):
    manifest, root, _ = sintel
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    server.requests.clear()
    server.close()  # nothing may be asked of the network now
    out = D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert out == root / "sintel" and server.requests == []


def test_marker_for_another_checksum_is_not_complete(server, sintel, tmp_path):
    manifest, root, data = sintel
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    entry = json.loads(manifest.read_text())
    entry["sintel"]["files"][0]["md5"] = md5(data + b"x")  # the published file changed
    manifest.write_text(json.dumps(entry))
    assert not D.is_complete("sintel", root=root, manifest=manifest)
    (root / "sintel" / D.MARKER).write_text("{ not json")
    assert not D.is_complete("sintel", root=root, manifest=manifest)


def test_voc_tars_merge_into_one_vocdevkit(server, tmp_path):
    trainval = tar_bytes({"VOCdevkit/VOC2007/JPEGImages/000005.jpg": b"jpeg5",
                          "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000005\n"})
    test = tar_bytes({"VOCdevkit/VOC2007/JPEGImages/000001.jpg": b"jpeg1",
                      "VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000001\n"})
    manifest = write_manifest(tmp_path, {"voc2007": [
        serve(server, "VOCtrainval_06-Nov-2007.tar", trainval, checksum="md5"),
        serve(server, "VOCtest_06-Nov-2007.tar", test, checksum="sha256")]})
    out = D.download_dataset("voc2007", root=tmp_path / "data", manifest=manifest,
                             progress=False)
    voc = out / "VOCdevkit" / "VOC2007"
    assert (voc / "JPEGImages" / "000005.jpg").read_bytes() == b"jpeg5"
    assert (voc / "JPEGImages" / "000001.jpg").read_bytes() == b"jpeg1"
    assert sorted(p.name for p in (voc / "ImageSets" / "Main").iterdir()) == [
        "test.txt", "trainval.txt"]
    assert sorted(p.name for p in out.iterdir()) == [D.MARKER, "VOCdevkit"]


def test_no_published_checksum_uses_size_and_archive_integrity(server, sintel, tmp_path):
    _, root, data = sintel
    manifest = write_manifest(tmp_path, {"sintel": [
        serve(server, "MPI-Sintel-complete.zip", data, checksum=None)]})
    out = D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert len(SintelFlow(out)) == 5


def test_unknown_name_lists_the_known_ones(sintel):
    manifest, root, _ = sintel
    with pytest.raises(ValueError, match=r"'sintl'.*sintel"):
        D.download_dataset("sintl", root=root, manifest=manifest, progress=False)
    assert D.datasets(manifest) == ["sintel"]
    assert set(D.datasets()) >= {"sintel", "voc2007"}  # the course's own manifest


def test_bad_manifest_entries_are_refused(tmp_path):
    manifest = write_manifest(tmp_path, {"x": [{"filename": "../evil.zip", "url": "http://a/b"}]})
    with pytest.raises(ValueError, match="bad filename"):
        D.download_dataset("x", root=tmp_path, manifest=manifest, progress=False)
    manifest = write_manifest(tmp_path, {"x": [{"filename": "a.zip", "url": "http://a/b",
                                                "md5": "123"}]})
    with pytest.raises(ValueError, match="md5"):
        D.load_manifest(manifest)


# ----------------------------------------------------------------------------- corruption
def test_md5_mismatch_deletes_the_download(server, sintel, tmp_path):
    _, root, data = sintel
    spec = serve(server, "MPI-Sintel-complete.zip", data)
    spec["md5"] = "0" * 32
    manifest = write_manifest(tmp_path, {"sintel": [spec]})
    with pytest.raises(ValueError) as err:
        D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    msg = str(err.value)
    assert "MPI-Sintel-complete.zip" in msg and "0" * 32 in msg and md5(data) in msg
    assert files_under(root) == []


def test_corrupt_archive_without_checksum_is_deleted(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("training/payload.bin", b"A" * 4000)
    data = bytearray(buf.getvalue())
    data[data.index(b"A" * 4000) + 2000] ^= 0xFF  # same size, a flipped byte: CRC fails
    manifest = write_manifest(tmp_path, {"sintel": [
        serve(server, "MPI-Sintel-complete.zip", bytes(data), checksum=None)]})
    with pytest.raises(ValueError, match="MPI-Sintel-complete.zip.*corrupt archive"):
        D.download_dataset("sintel", root=tmp_path / "data", manifest=manifest, progress=False)
    assert files_under(tmp_path / "data") == []


# ----------------------------------------------------------------------------- resuming
def test_broken_off_transfer_resumes_with_range(server, sintel):
    manifest, root, data = sintel
    server.truncate_once.add("MPI-Sintel-complete.zip")
    out = D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    half = len(data) // 2
    assert server.requests == [("MPI-Sintel-complete.zip", None),
                               ("MPI-Sintel-complete.zip", f"bytes={half}-")]
    assert len(SintelFlow(out)) == 5


def test_partial_file_of_an_earlier_run_is_resumed(server, sintel):
    manifest, root, data = sintel
    part = root / "sintel" / D.DOWNLOAD_DIR / "MPI-Sintel-complete.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert server.requests == [("MPI-Sintel-complete.zip", "bytes=1000-")]
    assert not part.parent.exists()


def test_failed_run_keeps_the_part_and_the_next_run_resumes(server, sintel):
    manifest, root, data = sintel
    name = "MPI-Sintel-complete.zip"
    server.truncate_once.add(name)
    server.fail[name] = 503  # after the broken-off first half, the server is down
    with pytest.raises(D.DownloadError, match="503") as err:
        D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert "resumes" in str(err.value)
    part = root / "sintel" / D.DOWNLOAD_DIR / (name + ".part")
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (root / "sintel" / D.MARKER).exists()
    del server.fail[name]
    server.requests.clear()
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert server.requests == [(name, f"bytes={len(data) // 2}-")]
    assert len(SintelFlow(root)) == 5


def test_server_ignoring_range_restarts_from_zero(server, sintel):
    manifest, root, data = sintel
    part = root / "sintel" / D.DOWNLOAD_DIR / "MPI-Sintel-complete.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that must not stay in front" * 10)
    server.ignore_range = True  # answers 200 with the whole file
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert server.requests == [("MPI-Sintel-complete.zip", "bytes=320-")]
    assert len(SintelFlow(root)) == 5


def test_complete_part_gets_416_and_is_kept(server, sintel):
    manifest, root, data = sintel
    part = root / "sintel" / D.DOWNLOAD_DIR / "MPI-Sintel-complete.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert server.requests == [("MPI-Sintel-complete.zip", f"bytes={len(data)}-")]
    assert len(SintelFlow(root)) == 5


def test_interrupted_unpacking_is_not_mistaken_for_complete(server, sintel, monkeypatch):
    manifest, root, _ = sintel
    real_extract, calls = zipfile.ZipFile.extract, []

    def flaky_extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 6:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half-way
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", flaky_extract)
    with pytest.raises(KeyboardInterrupt):
        D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    monkeypatch.undo()
    target = root / "sintel"
    assert not D.is_complete("sintel", root=root, manifest=manifest)
    assert sorted(p.name for p in target.iterdir()) == [D.DOWNLOAD_DIR]  # nothing half-unpacked
    server.requests.clear()
    D.download_dataset("sintel", root=root, manifest=manifest, progress=False)
    assert server.requests == []  # the verified archive of the first run was reused
    assert len(SintelFlow(target)) == 5


# ----------------------------------------------------------------------------- mirrors
def test_404_on_the_main_url_falls_back_to_the_mirror(server, sintel, tmp_path, capsys):
    _, root, data = sintel
    spec = serve(server, "MPI-Sintel-complete.zip", data, path="mirror/Sintel.zip")
    spec["url"], spec["mirrors"] = server.url("gone.zip"), [server.url("mirror/Sintel.zip")]
    manifest = write_manifest(tmp_path, {"sintel": [spec]})
    D.download_dataset("sintel", root=root, manifest=manifest, progress=True)
    assert [p for p, _ in server.requests] == ["gone.zip", "mirror/Sintel.zip"]
    assert "404" in capsys.readouterr().err
    assert len(SintelFlow(root)) == 5


def test_every_url_failing_raises_and_leaves_nothing(server, tmp_path):
    manifest = write_manifest(tmp_path, {"sintel": [
        {"filename": "MPI-Sintel-complete.zip", "url": server.url("a.zip"),
         "mirrors": [server.url("b.zip")], "md5": None}]})
    with pytest.raises(D.DownloadError, match="a.zip: HTTP 404.*b.zip: HTTP 404"):
        D.download_dataset("sintel", root=tmp_path / "data", manifest=manifest, progress=False)
    assert not (tmp_path / "data" / "sintel").exists()


# ----------------------------------------------------------------------------- unsafe archives
def zip_with(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, data, unix mode) members; mode 0 = plain file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/readme.txt", b"harmless")
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = ((mode or (stat.S_IFREG | 0o644)) & 0xFFFF) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def tar_with(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ok = tarfile.TarInfo("ok/readme.txt")
        ok.size = 8
        tar.addfile(ok, io.BytesIO(b"harmless"))
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    return buf.getvalue()


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


LNK = stat.S_IFLNK | 0o777
ESCAPE = "../../../escaped.txt"  # from <tmp>/data/sintel/.extract-x/ up to <tmp>/


def unsafe_cases(tmp_path: Path):
    absolute = str(tmp_path / "escaped.txt")
    return {
        "zip-absolute": ("zip", zip_with([(absolute, b"evil", 0)]), absolute),
        "zip-dotdot": ("zip", zip_with([(ESCAPE, b"evil", 0)]), ESCAPE),
        "zip-symlink-out": ("zip", zip_with([("ok/out", b"../../../..", LNK),
                                             ("ok/out/escaped.txt", b"evil", 0)]), "ok/out"),
        "zip-symlink-absolute": ("zip", zip_with([("ok/pw", b"/etc/passwd", LNK)]), "ok/pw"),
        "zip-symlink-chain": ("zip", zip_with([("x", b".", LNK), ("y", b"x/..", LNK)]), "y"),
        "zip-device": ("zip", zip_with([("ok/null", b"", stat.S_IFCHR | 0o666)]), "ok/null"),
        "tar-absolute": ("tar", tar_with([(absolute, b"evil")]), absolute),
        "tar-dotdot": ("tar", tar_with([(ESCAPE, b"evil")]), ESCAPE),
        "tar-symlink-out": ("tar", tar_with([link("ok/out", "../../../.."),
                                             ("ok/out/escaped.txt", b"evil")]), "ok/out"),
        "tar-symlink-absolute": ("tar", tar_with([link("ok/pw", "/etc/passwd")]), "ok/pw"),
        "tar-symlink-chain": ("tar", tar_with([link("x", "."), link("y", "x/..")]), "y"),
        "tar-through-link": ("tar", tar_with([link("ok/in", "."), ("ok/in/a.txt", b"a")]),
                             "ok/in/a.txt"),
        "tar-hardlink-out": ("tar", tar_with([link("ok/hard", "../../../escaped.txt",
                                                   tarfile.LNKTYPE)]), "ok/hard"),
        "tar-device": ("tar", tar_with([device("ok/null")]), "ok/null"),
    }


@pytest.mark.parametrize("case", list(unsafe_cases(Path("/x"))))
def test_unsafe_archives_are_refused(server, tmp_path, case):
    kind, data, member = unsafe_cases(tmp_path)[case]
    filename = "MPI-Sintel-complete.zip" if kind == "zip" else "VOCtest_06-Nov-2007.tar"
    (tmp_path / "work").mkdir()
    (tmp_path / "data").mkdir()  # the data root exists; <root>/set is the target
    (tmp_path / "work" / "keep.txt").write_text("a file outside the target")
    manifest = write_manifest(tmp_path, {"set": [serve(server, filename, data)]})
    before = tree_listing(tmp_path)
    with pytest.raises(ValueError, match="refusing to unpack member") as err:
        D.download_dataset("set", root=tmp_path / "data", manifest=manifest, progress=False)
    assert repr(member) in str(err.value) and filename in str(err.value)
    after = {p for p in tree_listing(tmp_path) if not p.startswith(os.path.join("data", "set"))}
    assert after == before
    assert not (tmp_path / "escaped.txt").exists() and files_under(tmp_path / "data") == []


def test_links_inside_the_archive_are_kept(server, tmp_path):
    data = zip_with([("ok/alias.txt", b"readme.txt", LNK)])
    manifest = write_manifest(tmp_path, {"set": [serve(server, "a.zip", data)]})
    out = D.download_dataset("set", root=tmp_path / "data", manifest=manifest, progress=False)
    assert (out / "ok" / "alias.txt").is_symlink()
    assert (out / "ok" / "alias.txt").read_bytes() == b"harmless"


# ----------------------------------------------------------------------------- the command
def test_s3_download_command(server, sintel, tmp_path, capsys):
    from s3lib.cli import main

    manifest, root, _ = sintel
    (tmp_path / "work").mkdir()
    rc = main(["download", "sintel", "--root", str(root), "--manifest", str(manifest),
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert len(SintelFlow(root / "sintel")) == 5
    assert str(root / "sintel") in capsys.readouterr().out
    # a failed download is a one-line error and exit status 2, not a traceback
    spec = serve(server, "VOCtest_06-Nov-2007.tar", tar_bytes({"VOCdevkit/a": b"a"}))
    spec["md5"] = "f" * 32
    bad = write_manifest(tmp_path / "work", {"voc2007": [spec]})
    assert main(["download", "voc2007", "--root", str(root), "--manifest", str(bad),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "f" * 32 in err and "Traceback" not in err
