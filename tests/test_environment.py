"""The set-up: pins, environment.yml and pyproject.toml agree; `make lab` serves JupyterLab."""

import importlib.metadata as md
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import tomllib  # the pinned environment is Python 3.11+ (environment.yml, Makefile)
import urllib.error
import urllib.request

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from browser import stop_process_group
from conftest import REPO

# What the course and its tests use (issue 2); OpenCV is the GUI-less build of opencv-python.
REQUIRED = ["torch", "jupyterlab", "ipywidgets", "matplotlib", "numpy", "opencv-python-headless",
            "nbval", "pytest", "scipy", "tqdm", "scikit-video", "playwright", "ipykernel"]


def pins() -> dict[str, Version]:
    out = {}
    for n, line in enumerate((REPO / "requirements.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"requirements.txt:{n}: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in out, f"requirements.txt:{n}: {req.name} pinned twice"
        out[name] = Version(spec[0].version)
    return out


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requirements_are_exact_pins_of_everything_needed():
    p = pins()
    missing = [r for r in REQUIRED if canonicalize_name(r) not in p]
    assert not missing, f"requirements.txt lacks {missing}"
    assert p["torch"] == Version("2.13.0"), "torch must stay pinned to the 2.13.0 CPU build"


def test_every_pyproject_range_admits_the_pin():
    proj = pyproject()["project"]
    p = pins()
    reqs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        reqs += extra
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in p, f"pyproject.toml needs {req.name} but requirements.txt does not pin it"
        assert req.specifier.contains(p[name], prereleases=True), (
            f"pyproject.toml range {text!r} excludes the pin {req.name}=={p[name]}")


def test_pyproject_declares_the_package_script_and_python():
    proj = pyproject()["project"]
    assert proj["name"] == "s3lib"
    assert proj["scripts"]["s3"] == "s3lib.cli:main"
    assert proj["requires-python"] == ">=3.10"


def test_environment_yml_installs_the_same_pins_as_pip():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict)]
    assert "python=3.11" in conda and "pip" in conda
    assert set(conda) == {"python=3.11", "pip"}, "conda must not install packages pip pins"
    assert pip_sections == [["-r requirements.txt", "-e ."]]
    py = Version(conda[0].split("=")[1]) if conda[0].startswith("python") else None
    from packaging.specifiers import SpecifierSet
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(py)


def test_installed_versions_are_the_pinned_ones():
    wrong = []
    for name, version in pins().items():
        try:
            have = Version(md.version(name))
        except md.PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if Version(have.base_version) != version and have != version:
            wrong.append(f"{name} {have} != {version}")
    assert not wrong, "run `make setup`: " + "; ".join(wrong)


def test_ci_runs_make_test_and_readme_shows_the_two_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test\s*$", ci, re.M)
    readme = (REPO / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_make_lab_serves_jupyterlab_on_localhost_with_a_token(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    args = f"--no-browser --ServerApp.port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"ARGS={args}"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = _get(f"http://127.0.0.1:{port}/api/status?token={token}")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        assert status == 200, f"make lab did not serve: {(tmp_path / 'lab.log').read_text()[-2000:]}"
        assert _get(f"http://127.0.0.1:{port}/api/contents") == 403, "the server must need the token"
        listing = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5)
        import json
        names = {item["name"] for item in json.load(listing)["content"]}
        assert "00_overview.ipynb" in names, "JupyterLab should open on notebooks/"
    finally:
        stop_process_group(proc, 20)
        log.close()
