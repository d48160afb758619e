"""Headless Chromium over the DevTools protocol, through a pipe (no websocket library, no network).

Used to print the report to PDF from the very HTML a reviewer opens, and by the browser tests to
load the page and watch its console and network. Chromium is started with `--remote-debugging-pipe`:
it reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    """Chromium could not be started, or a DevTools command failed or timed out."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable: $INTERP_CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("INTERP_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless Chromium with one page attached (flat session). Use as a context manager.

    `events` collects every protocol event of the page (method, params) in arrival order, so callers
    can look for console errors (Runtime.consoleAPICalled, Runtime.exceptionThrown, Log.entryAdded)
    and requests (Network.requestWillBeSent) after a load.
    """

    def __init__(self, executable: str | None = None, timeout: float = 60.0, width: int = 1280, height: int = 2000):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("Chromium not found (install the Debian package `chromium`, or set INTERP_CHROMIUM)")
        self.timeout = timeout
        self.width, self.height = width, height
        self.events: list[tuple[str, dict]] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.TemporaryDirectory(prefix="interp-chromium-")
        self.session: str | None = None

    # -- process and pipe
    def __enter__(self) -> Chromium:
        # pipe ends moved above the standard fds: with stdin closed (as under some schedulers) os.pipe()
        # returns fd 0, which the child's stdio set-up would overwrite before Chromium starts
        to_child_r, self._to_child = (_high_fd(fd) for fd in os.pipe())
        self._from_child, from_child_w = (_high_fd(fd) for fd in os.pipe())

        def wire() -> None:  # runs in the child: the protocol pipes must be fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            for fd in (3, 4):  # dup2 onto itself (a == 3) keeps close-on-exec: clear it explicitly
                os.set_inheritable(fd, True)

        cmd = [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self._stderr = open(Path(self._profile.name) / "chromium.stderr", "w+b")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr, preexec_fn=wire, close_fds=False)
        except OSError as exc:
            raise BrowserError(f"cannot start {self.executable}: {exc}") from exc
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        try:
            targets = self.send("Target.getTargets")["targetInfos"]
            page = next((t for t in targets if t["type"] == "page"), None)
            target_id = page["targetId"] if page else self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target_id, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable", session=True)
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except BrowserError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._stderr.close()
            self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()}): {self.stderr_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: bool = False, timeout: float | None = None, **params: Any) -> dict:
        """Send one command and return its result; events that arrive meanwhile go to `events`."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"Chromium is gone ({exc}): {self.stderr_tail()}") from exc
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append((reply["method"], reply.get("params", {})))

    def stderr_tail(self, n: int = 600) -> str:
        """The end of Chromium's stderr (why it failed to start, usually)."""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")[-n:].strip()
        except (OSError, ValueError):
            return ""

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        """Wait for the next event `method` not yet seen (events already collected are searched first)."""
        seen = getattr(self, "_consumed", set())
        for i, (m, params) in enumerate(self.events):
            if m == method and i not in seen:
                seen.add(i)
                self._consumed = seen
                return params
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if "method" in msg:
                self.events.append((msg["method"], msg.get("params", {})))
                if msg["method"] == method:
                    seen.add(len(self.events) - 1)
                    self._consumed = seen
                    return msg.get("params", {})

    # -- page actions
    def load(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.send("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-serialisable results)."""
        res = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"JavaScript error: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        """PNG of the viewport (or the whole page) written to `path`."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            h = int(self.evaluate("document.documentElement.scrollHeight"))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1}
        data = self.send("Page.captureScreenshot", session=True, **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def print_pdf(self, title: str) -> bytes:
        """PDF bytes of the loaded page with the print stylesheet; every <details> opened first;
        footer with `title` and page numbers."""
        self.evaluate("document.querySelectorAll('details[data-print=open]').forEach(d => d.open = true); true")
        footer = ("<div style='font-size:7px;width:100%;text-align:center;color:#555;font-family:sans-serif'>"
                  f"{_escape(title)} &middot; page <span class='pageNumber'></span> of "
                  "<span class='totalPages'></span></div>")
        res = self.send("Page.printToPDF", session=True, printBackground=True, preferCSSPageSize=True,
                        displayHeaderFooter=True, headerTemplate="<span></span>", footerTemplate=footer,
                        generateDocumentOutline=True)
        return base64.b64decode(res["data"])

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for method, p in self.events:
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requests(self) -> list[str]:
        """URLs of every request the page made (Network.requestWillBeSent)."""
        return [p["request"]["url"] for m, p in self.events if m == "Network.requestWillBeSent"]


def _high_fd(fd: int, lowest: int = 10) -> int:
    """A close-on-exec duplicate of `fd` numbered `lowest` or above; `fd` itself is closed."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return new


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_to_pdf(html: str | Path, pdf: str | Path, title: str, timeout: float = 120.0) -> bool:
    """Print `html` to `pdf` with headless Chromium; False (and a log line) when Chromium is absent
    or fails, so the report still builds without it. The PDF is written atomically."""
    from interp.io import atomic_path

    exe = find_chromium()
    if exe is None:
        log.warning("report.pdf not written: Chromium not found (install the Debian package `chromium`, "
                    "e.g. `make sysdeps` as root, or set INTERP_CHROMIUM)")
        return False
    try:
        with Chromium(exe, timeout=timeout) as browser:
            browser.load(Path(html).resolve().as_uri())
            data = browser.print_pdf(title)
    except BrowserError as exc:
        log.warning("report.pdf not written: %s", exc)
        return False
    with atomic_path(pdf) as tmp:
        Path(tmp).write_bytes(data)
    log.info("report.pdf written with %s (%d bytes)", exe, len(data))
    return True
