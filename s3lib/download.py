"""Real data sets on request: a registry of URLs and checksums, verified downloads, safe unpacking.

The registry is ``data/manifest.json`` (in the spirit of d2l's ``DATA_HUB[name] = (url, sha1)``)::

    {"sintel": {"title": ..., "files": [{"filename": "MPI-Sintel-complete.zip",
                                         "url": "http://...", "mirrors": ["http://..."],
                                         "md5": "..." or null, "sha256": ... (optional),
                                         "size": bytes (optional)}]}}

:func:`download_dataset` (``s3 download NAME``) fetches every file of an entry into
``<root>/<name>/`` (``root`` defaults to :func:`s3lib.config.data_root`, i.e. ``data/`` or
``$S3_DATA``) and unpacks it there:

- **streamed** with :mod:`urllib` (HTTP status checked: 200, or 206 for a resumed request), with a
  ``tqdm`` progress bar;
- **resumable**: bytes go to ``<name>/.download/<file>.part``; an interrupted download (a dropped
  connection, fewer bytes than ``Content-Length``, Ctrl-C) continues with an HTTP ``Range``
  request, in the same call or the next; a server that ignores ``Range`` (answers 200) is read
  from the start again;
- **mirrors** are tried in order when a URL fails (HTTP error, network error);
- **verified**: against the published sha256 or md5 when the manifest has one; otherwise the
  size (``Content-Length``, and ``size`` when given) and the archive's integrity (every zip CRC,
  every tar member read through). A corrupt file is deleted and ``ValueError`` names it with the
  expected and actual checksum;
- **unpacked safely and atomically**: every member is checked before anything is written
  (absolute paths, ``..`` components, links pointing outside the target, paths through links,
  device files and fifos are refused with a ``ValueError`` naming the member; tar archives are
  also extracted with the ``"data"`` filter where Python has it); the archive is unpacked into a
  temporary folder inside ``<root>/<name>/`` and then renamed into place;
- **done once**: a marker ``<name>/.complete.json`` (file names, sizes, md5 and sha256, top-level
  entries) is written last, atomically; with it in place a new call returns at once, without
  network. Without it (an interrupted run) a new call finishes the job, reusing verified archives
  kept in ``.download/``. The archives are deleted once the marker is written.

Sintel's zip unpacks ``training/`` and ``test/`` at its top level, so ``data/sintel/training/...``
is what :class:`s3lib.data.sintel.SintelFlow` reads; the VOC 2007 tars both unpack
``VOCdevkit/VOC2007/...`` and are merged into ``data/voc2007/VOCdevkit/``.

Explained in ``notebooks/05_sintel.ipynb`` (Sintel) and ``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from ._io import atomic_write
from .config import data_root, repo_root

MARKER = ".complete.json"
"""Written into ``<root>/<name>/`` once every file is downloaded, verified and unpacked."""
DOWNLOAD_DIR = ".download"
"""Folder inside ``<root>/<name>/`` for partial (``.part``) and verified archives."""
_EXTRACT_PREFIX = ".extract-"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
"""Seconds a connection may stall before the attempt counts as failed."""
MAX_RESUMES = 20
"""How many times one URL is resumed in a call after a transfer that made progress broke off."""
USER_AGENT = "s3lib-download/1.0 (s3course; python urllib)"

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_HEX = {"md5": 32, "sha256": 64}
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # () catches nothing on older Pythons


class DownloadError(OSError):
    """Every URL of a file failed (HTTP errors, network errors, broken-off transfers)."""


# ----------------------------------------------------------------------------- registry
def manifest_path() -> Path:
    """The course's registry: ``<repo>/data/manifest.json``."""
    return repo_root() / "data" / "manifest.json"


def load_manifest(manifest: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The data sets of a manifest file (default :func:`manifest_path`), checked.

    Keys starting with ``_`` (comments) are skipped. Raises ``FileNotFoundError`` when the file
    is missing and ``ValueError`` (naming the file and the entry) when it is malformed.
    """
    path = Path(manifest) if manifest is not None else manifest_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of data sets")
    out = {}
    for name, entry in raw.items():
        if name.startswith("_"):
            continue
        where = f"{path}: data set {name!r}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"{where}: a name must be letters, digits, '_', '.', '-'")
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, list) or not files:
            raise ValueError(f"{where}: expected a non-empty list 'files'")
        for spec in files:
            _check_spec(spec, where)
        out[name] = entry
    return out


def _check_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: each file must be an object")
    filename = spec.get("filename")
    if (not isinstance(filename, str) or not filename or filename.startswith(".")
            or "/" in filename or "\\" in filename or filename != filename.strip()):
        raise ValueError(f"{where}: bad filename {filename!r} (a plain file name is needed)")
    urls = [spec.get("url"), *(spec.get("mirrors") or [])]
    if not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"{where}: {filename}: 'url' and 'mirrors' must be strings")
    for algo, length in _HEX.items():
        value = spec.get(algo)
        if value is not None and not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", str(value)):
            raise ValueError(f"{where}: {filename}: {algo} must be {length} hex digits or null")
    size = spec.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"{where}: {filename}: size must be a non-negative integer or null")


def datasets(manifest: str | os.PathLike | None = None) -> list[str]:
    """Names of the data sets ``s3 download`` knows."""
    return sorted(load_manifest(manifest))


def is_complete(name: str, root: str | os.PathLike | None = None,
                manifest: str | os.PathLike | None = None) -> bool:
    """True when ``<root>/<name>/`` holds a finished, unpacked download of the current entry."""
    entry = _entry(name, manifest)
    return _marker_ok(_target(name, root), name, entry)


def _entry(name: str, manifest) -> dict[str, Any]:
    entries = load_manifest(manifest)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ValueError(f"unknown data set {name!r}; known data sets: {known}")
    return entries[name]


def _target(name: str, root) -> Path:
    return (Path(root).expanduser() if root is not None else data_root()) / name


def _marker_ok(target: Path, name: str, entry: dict[str, Any]) -> bool:
    """The marker exists, matches the manifest entry, and what it lists is on disk."""
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
        if marker.get("name") != name or marker.get("complete") is not True:
            return False
        recorded = marker["files"]
        if [r["filename"] for r in recorded] != [s["filename"] for s in entry["files"]]:
            return False
        for spec, rec in zip(entry["files"], recorded):
            for algo in _HEX:
                if spec.get(algo) and spec[algo].lower() != str(rec.get(algo)).lower():
                    return False
            if any(not (target / e).exists() and not (target / e).is_symlink()
                   for e in rec["entries"]):
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


# ----------------------------------------------------------------------------- download
def download_dataset(name: str, root: str | os.PathLike | None = None,
                     manifest: str | os.PathLike | None = None,
                     progress: bool = True) -> Path:
    """Download, verify and unpack the data set ``name`` into ``<root>/<name>/``; return that path.

    Args:
        name: a key of the manifest (``"sintel"``, ``"voc2007"``); others raise ``ValueError``
            listing the known names.
        root: the data root (default :func:`s3lib.config.data_root`: ``data/`` or ``$S3_DATA``).
        manifest: another manifest file (default ``data/manifest.json``), e.g. for tests.
        progress: show ``tqdm`` progress bars and mirror messages (on stderr).

    A second call after success returns at once without touching the network (the marker
    ``.complete.json``). See the module docstring for resuming, mirrors, verification and the
    safety checks.

    Raises:
        ValueError: unknown name; a download that fails verification (deleted; the message names
            the file, expected and actual checksum); an archive member that is unsafe to unpack
            (the message names the member; nothing is written outside ``<root>/<name>/``).
        DownloadError: (an ``OSError``) every URL of a file failed; the partial file is kept and
            a new call resumes it.
    """
    entry = _entry(name, manifest)
    target = _target(name, root)
    if _marker_ok(target, name, entry):
        return target
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(_EXTRACT_PREFIX + "*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    try:
        (target / MARKER).unlink()  # stale or for another manifest entry
    except FileNotFoundError:
        pass
    cache = target / DOWNLOAD_DIR
    records = []
    try:
        for spec in entry["files"]:
            path, digests = _fetch(spec, cache, progress)
            entries = _unpack(path, target, progress)
            records.append({"filename": spec["filename"], "size": path.stat().st_size,
                            **digests, "entries": entries})
    except BaseException:
        _remove_empty(cache)
        if created:
            _remove_empty(target)
        raise
    marker = {"name": name, "complete": True, "files": records,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_write(target / MARKER, "w") as fh:
        json.dump(marker, fh, indent=2)
    shutil.rmtree(cache, ignore_errors=True)
    return target


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _fetch(spec: dict[str, Any], cache: Path, progress: bool) -> tuple[Path, dict[str, str]]:
    """A verified copy of ``spec``'s file in ``cache`` and its ``{"md5", "sha256"}``."""
    filename = spec["filename"]
    final, part = cache / filename, cache / (filename + ".part")
    if final.is_file():  # verified by an earlier, interrupted run: check again, cheaply reuse
        try:
            return final, _verify(spec, final, source="an earlier download")
        except ValueError as exc:
            _say(progress, f"{exc}; downloading it again")
    cache.mkdir(parents=True, exist_ok=True)
    urls = [spec["url"], *(spec.get("mirrors") or [])]
    errors = []
    for i, url in enumerate(urls):
        try:
            _download(url, part, progress, desc=filename)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {_describe(exc)}")
            if i + 1 < len(urls):
                _say(progress, f"{filename}: {url} failed ({_describe(exc)}); trying {urls[i + 1]}")
            continue
        digests = _verify(spec, part, source=url)
        os.replace(part, final)
        return final, digests
    kept = (f"; the partial file {part} ({part.stat().st_size} bytes) is kept and the next "
            f"run resumes it" if part.is_file() and part.stat().st_size else "")
    raise DownloadError(f"{filename}: every URL failed: " + "; ".join(errors) + kept)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Truncated(OSError):
    """The server sent fewer bytes than it announced."""


def _download(url: str, part: Path, progress: bool, desc: str) -> None:
    """Complete ``part`` from ``url``, resuming while each attempt makes progress."""
    resumes = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _download_once(url, part, progress, desc)
            return
        except (OSError, http.client.HTTPException):
            after = part.stat().st_size if part.exists() else 0
            if after > before and resumes < MAX_RESUMES:  # it moved: resume with Range
                resumes += 1
                continue
            raise


def _download_once(url: str, part: Path, progress: bool, desc: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left after offset: done, or a stale part
            total = _range_total(exc.headers.get("Content-Range", ""))
            exc.close()
            if total == offset:
                return
            part.unlink()
            return _download_once(url, part, progress, desc)
        raise
    with response:
        status = getattr(response, "status", None)
        if status is None and url.lower().startswith("file:"):
            status = 200
        total: int | None
        if status == 206 and offset:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)",
                             response.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != offset:  # not what was asked: start again
                response.close()
                part.unlink()
                return _download_once(url, part, progress, desc)
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        elif status == 200:  # a fresh start, or a server that ignores Range
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {status} "
                                f"(expected 200{' or 206' if offset else ''})")
        from tqdm.auto import tqdm

        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B",
                                          unit_scale=True, unit_divisor=1024, desc=desc,
                                          disable=not progress, leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    fh.write(exc.partial)
                    raise _Truncated(f"connection closed after {offset + fh.tell()} bytes")
                if not chunk:
                    break
                fh.write(chunk)
                bar.update(len(chunk))
        size = part.stat().st_size
        if total is not None and size != total:
            raise _Truncated(f"got {size} of {total} bytes (the connection broke off)")


def _range_total(content_range: str) -> int | None:
    m = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------- verification
def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """``{"md5": ..., "sha256": ...}`` of a file, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _verify(spec: dict[str, Any], path: Path, source: str) -> dict[str, str]:
    """Check ``path`` against ``spec``; on failure delete it and raise ``ValueError``."""
    filename = spec["filename"]

    def fail(problem: str):
        path.unlink(missing_ok=True)
        raise ValueError(f"{filename}: {problem} (from {source}); the corrupt download was "
                         f"deleted, run the download again")

    size = path.stat().st_size
    if spec.get("size") is not None and size != spec["size"]:
        fail(f"size mismatch: expected {spec['size']} bytes, got {size}")
    digests = file_digests(path)
    for algo in ("sha256", "md5"):  # the stronger published one decides
        if spec.get(algo):
            expected, actual = spec[algo].lower(), digests[algo]
            if expected != actual:
                fail(f"checksum mismatch: expected {algo} {expected}, got {actual}")
            return digests
    problem = _archive_problem(path)  # no checksum published: the archive must read through
    if problem:
        fail(f"corrupt archive ({problem}; no checksum is published, md5 {digests['md5']})")
    return digests


def _archive_kind(filename: str) -> str | None:
    lower = filename.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


def _archive_problem(path: Path) -> str | None:
    """Why the archive at ``path`` is unreadable, or ``None`` (every byte read and checked)."""
    kind = _archive_kind(path.name.removesuffix(".part"))
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            return f"member {bad!r} fails its CRC check" if bad else None
        if kind == "tar":
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    if member.isfile():
                        fh = tar.extractfile(member)
                        while fh.read(CHUNK):
                            pass
            return None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zipfile.LargeZipFile,
            ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# ----------------------------------------------------------------------------- unpacking
def _unpack(archive: Path, target: Path, progress: bool) -> list[str]:
    """Unpack ``archive`` into ``target`` through a temporary folder; the top-level names."""
    tmp = Path(tempfile.mkdtemp(prefix=_EXTRACT_PREFIX, dir=target))
    try:
        kind = _archive_kind(archive.name)
        try:
            if kind == "zip":
                _extract_zip(archive, tmp, progress)
            elif kind == "tar":
                _extract_tar(archive, tmp, progress)
            else:
                shutil.copy2(archive, tmp / archive.name)
            _check_links(tmp, archive)
        except ValueError:
            archive.unlink(missing_ok=True)  # verified but unusable: do not keep 5 GB of it
            raise
        entries = sorted(p.name for p in tmp.iterdir())
        _merge(tmp, target)
        return entries
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unsafe(archive: Path, member: str, why: str) -> ValueError:
    return ValueError(f"{archive.name}: refusing to unpack member {member!r}: {why}; nothing "
                      f"was unpacked")


def _check_name(archive: Path, name: str) -> list[str]:
    """The path components of a member name; ``ValueError`` when it could escape the target."""
    if "\x00" in name:
        raise _unsafe(archive, name, "NUL byte in the name")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _unsafe(archive, name, "absolute path")
    parts = [p for p in re.split(r"[/\\]+", name) if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, name, "'..' component (would write outside the target)")
    if parts and parts[0] in (MARKER, DOWNLOAD_DIR) or (parts and parts[0].startswith(
            _EXTRACT_PREFIX)):
        raise _unsafe(archive, name, "clashes with a name the downloader uses")
    return parts


def _check_link(archive: Path, name: str, link: str, hard: bool = False) -> None:
    """Refuse a link whose target is absolute or leaves the archive's root."""
    what = "hard link" if hard else "symlink"
    if not link or link.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", link):
        raise _unsafe(archive, name, f"{what} to an absolute path {link!r}")
    base = "" if hard else posixpath.dirname(name.replace("\\", "/"))
    resolved = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise _unsafe(archive, name, f"{what} pointing outside the target ({link!r})")


def _through_link(archive: Path, name: str, parts: list[str], links: set[str]) -> None:
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            raise _unsafe(archive, name, f"path through the link {'/'.join(parts[:i])!r}")


def _extract_zip(archive: Path, dest: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        links: dict[str, str] = {}
        for info in infos:  # check everything before writing anything
            parts = _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8", "replace")
                _check_link(archive, info.filename, target)
                links["/".join(parts)] = target
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type kept
                raise _unsafe(archive, info.filename, "device file, fifo or socket")
        for info in infos:
            _through_link(archive, info.filename, _check_name(archive, info.filename),
                          set(links))
        for info in tqdm(infos, desc=f"unpack {archive.name}", unit="file",
                         disable=not progress, leave=False):
            if "/".join(_check_name(archive, info.filename)) not in links:
                zf.extract(info, dest)
        for name, target in links.items():  # last, so nothing is written through them
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, dest / name)


def _extract_tar(archive: Path, dest: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        links: set[str] = set()
        for m in members:  # check everything before writing anything
            parts = _check_name(archive, m.name)
            if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
                raise _unsafe(archive, m.name, "device file or fifo")
            if m.issym():
                _check_link(archive, m.name, m.linkname)
                links.add("/".join(parts))
            elif m.islnk():
                _check_link(archive, m.name, m.linkname, hard=True)
            elif not (m.isfile() or m.isdir()):
                raise _unsafe(archive, m.name, f"unsupported member type {m.type!r}")
        for m in members:
            _through_link(archive, m.name, _check_name(archive, m.name), links)
            if m.islnk():
                _through_link(archive, m.name, _check_name(archive, m.linkname) + ["x"], links)
        use_filter = hasattr(tarfile, "data_filter")  # Python >= 3.11.4 / 3.10.12
        for m in tqdm(members, desc=f"unpack {archive.name}", unit="file",
                      disable=not progress, leave=False):
            try:
                if use_filter:
                    tar.extract(m, dest, filter="data")
                else:  # pragma: no cover - older Pythons: our checks above, no owners/modes
                    tar.extract(m, dest, set_attrs=False)
            except _FILTER_ERROR as exc:  # e.g. a chain of links that leaves the target
                raise _unsafe(archive, m.name, f"{type(exc).__name__}: {exc}") from None


def _check_links(tmp: Path, archive: Path) -> None:
    """After unpacking: every symlink must resolve inside ``tmp``."""
    root = os.path.realpath(tmp)
    for folder, dirs, files in os.walk(tmp):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != root and not real.startswith(root + os.sep):
                    raise _unsafe(archive, os.path.relpath(path, tmp),
                                  "symlink resolving outside the target")


def _merge(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into ``dst`` by renames, merging folders that exist."""
    for child in src.iterdir():
        out = dst / child.name
        if child.is_dir() and not child.is_symlink() and out.is_dir():
            _merge(child, out)  # (an existing symlinked folder in dst is followed: user's choice)
            continue
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        elif out.exists() or out.is_symlink():
            out.unlink()
        try:
            os.replace(child, out)
        except OSError:  # another file system (dst through a user's symlink)
            shutil.move(str(child), str(out))

