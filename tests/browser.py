"""Browser harness: JupyterLab on 127.0.0.1 driven by Playwright in Debian's headless chromium.

Reused by every notebook's browser test (``tests/test_browser.py``)::

    with LabServer(workdir, quick=True) as lab, lab_page(lab, artifacts) as page:
        nb = NotebookPage(page, lab, "00_overview.ipynb")
        nb.open(); nb.wait_kernel_ready(); nb.run_all()
        before = nb.widget_state()
        nb.set_slider("first frame", 20)
        nb.wait_widget_change(before)

The server is started with its own config/runtime/workspace folders (nothing of the user's
JupyterLab set-up leaks in), a random token, news and update checks off, and the application
object exposed (``--expose-app-in-browser``) so the harness can ask the notebook panel for the
real state of its kernel connection instead of trusting the toolbar. It is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]


def chromium_executable() -> str:
    """Debian's chromium (installed by ``make test``); never a Playwright-downloaded browser."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Debian's chromium is not installed: run `make test` (it installs it "
                           "with apt-get) or `sudo apt-get install chromium`")
    return path


def stripped_copy(src: Path, dst_dir: Path, inject_after_first: list[str] | None = None) -> Path:
    """Copy a notebook without outputs, widget state or execution counts, for a fresh run.

    ``inject_after_first`` adds code cells after the first code cell (used to break a callback
    on purpose and check that the test notices). The copy uses the server's own ``python3``
    kernel, i.e. the Python that runs the tests.
    """
    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if inject_after_first:
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        for k, source in enumerate(inject_after_first):
            nb.cells.insert(first + 1 + k, nbformat.v4.new_code_cell(source))
    dst = dst_dir / src.name
    nbformat.write(nb, dst)
    return dst


def stop_process_group(proc: subprocess.Popen, wait: float = 20) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it started, by its
    PID: SIGTERM to its process group, SIGKILL after ``wait`` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server on 127.0.0.1 serving ``root``; a context manager."""

    def __init__(self, root: Path, state_dir: Path, quick: bool = True, timeout: float = 120):
        self.root, self.state_dir, self.quick, self.timeout = root, state_dir, quick, timeout
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log_path = state_dir / "jupyterlab.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str):
        """GET ``/api/<path>`` with the token; returns the decoded JSON."""
        with urllib.request.urlopen(f"{self.base}/api/{path}?token={self.token}", timeout=10) as r:
            return json.load(r)

    def __enter__(self) -> "LabServer":
        env = dict(os.environ)
        env.update(
            S3_QUICK="1" if self.quick else "0", PYTHONHASHSEED="0",
            JUPYTER_CONFIG_DIR=str(self.state_dir / "config"),
            JUPYTER_DATA_DIR=str(self.state_dir / "data"),
            JUPYTER_RUNTIME_DIR=str(self.state_dir / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.state_dir / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.state_dir / "workspaces"),
            IPYTHONDIR=str(self.state_dir / "ipython"))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True"]
        # no "get notified about Jupyter news?" toast over the widgets
        labconfig = self.state_dir / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_up(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer in {self.timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc)  # the server and its kernels, by PID
        if getattr(self, "log", None):
            self.log.close()


@contextmanager
def lab_page(lab: LabServer, artifacts: Path, name: str) -> Iterator:
    """A Playwright page in headless Debian chromium; saves a screenshot if the block fails."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_executable(), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            try:
                yield page
            except BaseException:
                artifacts.mkdir(parents=True, exist_ok=True)
                shot = artifacts / f"{name}.png"
                try:
                    page.screenshot(path=str(shot), full_page=True)
                    print(f"screenshot of the failure: {shot}", file=sys.stderr)
                except Exception as err:  # the page may be gone; keep the original error
                    print(f"no screenshot ({err})", file=sys.stderr)
                print(f"JupyterLab log:\n{lab.log_tail()}", file=sys.stderr)
                raise
        finally:
            browser.close()


_PANEL = "window.jupyterapp.shell.currentWidget"


class NotebookPage:
    """One notebook opened in JupyterLab, with waits that check the real kernel state."""

    def __init__(self, page, lab: LabServer, path: str, workspace: str = "test"):
        self.page, self.lab, self.path, self.workspace = page, lab, path, workspace

    def open(self) -> None:
        """Open the notebook alone, in a fresh workspace (no tabs restored from earlier tests)."""
        self.page.goto(f"{self.lab.base}/lab/workspaces/{self.workspace}/tree/{self.path}"
                       f"?reset&token={self.lab.token}")
        self.page.wait_for_function(
            f"() => window.jupyterapp && {_PANEL} && {_PANEL}.context && "
            f"{_PANEL}.context.path === {json.dumps(self.path)} && {_PANEL}.context.isReady",
            timeout=90_000)

    def wait_kernel_ready(self, timeout: float = 120) -> None:
        """Wait until the panel's kernel is connected and idle AND the server agrees.

        The toolbar can say "idle" while the session is still starting; the kernel connection
        status and the server's session list cannot.
        """
        self.page.wait_for_function(
            f"""() => {{
              const s = {_PANEL}.sessionContext;
              const k = s && s.session && s.session.kernel;
              return !!k && k.connectionStatus === 'connected' && k.status === 'idle'
                     && !s.isDisposed && !s.pendingInput;
            }}""", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sessions = [s for s in self.lab.api("sessions") if s["path"].endswith(self.path)]
            if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
                return
            time.sleep(0.3)
        raise TimeoutError(f"the kernel of {self.path} never became idle on the server")

    def run_all(self, timeout: float = 600) -> None:
        """Run every cell and wait until all have run; fail with the traceback of an error."""
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(
            f"""() => {{
              const nb = {_PANEL}.content;
              const k = {_PANEL}.sessionContext.session.kernel;
              const code = nb.widgets.filter(c => c.model.type === 'code');
              const errored = code.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
              return errored || (k.status === 'idle' && code.every(c => c.model.executionCount !== null));
            }}""", timeout=timeout * 1000, polling=500)
        errors = self.page.evaluate(
            f"""() => {_PANEL}.content.widgets.flatMap(c => c.model.type === 'code'
                ? c.model.outputs.toJSON().filter(o => o.output_type === 'error') : [])""")
        if errors:
            e = errors[0]
            raise AssertionError(f"a cell failed: {e['ename']}: {e['evalue']}\n" + "\n".join(e.get("traceback", []))[-3000:])

    def widget_state(self) -> dict[str, list[str]]:
        """What the notebook's widgets show: image sources and label texts, in page order."""
        return self.page.evaluate("""() => ({
            images: [...document.querySelectorAll('.jp-OutputArea .widget-image')].map(e => e.src),
            labels: [...document.querySelectorAll('.jp-OutputArea .widget-label')].map(e => e.textContent),
        })""")

    def slider(self, description: str):
        """The slider widget whose description label reads ``description``."""
        return self.page.locator(".jp-OutputArea .widget-slider").filter(
            has=self.page.locator(".widget-label", has_text=description)).first

    def set_slider(self, description: str, value: float) -> None:
        """Type a value into a slider's read-out, as a reader can, and press Enter."""
        readout = self.slider(description).locator(".widget-readout")
        readout.scroll_into_view_if_needed()
        readout.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(str(value))
        self.page.keyboard.press("Enter")

    def wait_widget_change(self, before: dict, timeout: float = 60) -> dict:
        """Wait until an image and a label both differ from ``before``; returns the new state."""
        deadline = time.monotonic() + timeout
        state = before
        while time.monotonic() < deadline:
            state = self.widget_state()
            if state["images"] != before["images"] and state["labels"] != before["labels"]:
                return state
            time.sleep(0.25)
        raise AssertionError(f"the widget output did not change within {timeout} s: {state['labels']}")
