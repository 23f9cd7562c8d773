"""A real headless Chromium for the page tests (Debian's ``chromium`` package).

Skipped with the reason when it is missing, except under ``MLMEDIC_REQUIRE_BROWSER=1`` (set by
``.ci/run``), where a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=AutofillServerCommunication",  # its own request on a page with a form
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium's own services: it calls them on its own schedule (sign-in, component updates),
# so a blank page's run does not always see them. A page's assets never come from these.
BROWSER_HOSTS = frozenset(
    {
        "accounts.google.com",
        "clients2.google.com",
        "clientservices.googleapis.com",
        "content-autofill.googleapis.com",
        "optimizationguide-pa.googleapis.com",
        "safebrowsing.googleapis.com",
        "update.googleapis.com",
    }
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("MLMEDIC_REQUIRE_BROWSER") == "1":
            pytest.fail("MLMEDIC_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


class RequestTrap:
    """A local 'proxy' that answers nothing and notes the host of every request made to it:
    every request that would leave the machine comes here instead."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(32)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.hosts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            client.settimeout(1.0)
            try:
                line = client.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                line = ""
            client.close()
            parts = line.split()
            if len(parts) < 2:
                continue  # a connection opened ahead of time that never asked for anything
            target = parts[1]
            self.hosts.append(target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.close()


@dataclass
class Loaded:
    dom: str
    console: list[str]
    screenshot: Path
    requests_off_machine: list[str]  # hosts, besides those the browser contacts on its own


def _own_requests(binary: str, folder: Path) -> set[str]:
    """The hosts Chromium contacts by itself (component updates, time), loading a blank page."""
    trap = RequestTrap()
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=folder))
    try:
        subprocess.run(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{trap.port}",
                "--dump-dom",
                "about:blank",
            ],
            capture_output=True,
            timeout=120,
        )
    finally:
        trap.close()
        shutil.rmtree(profile, ignore_errors=True)
    return set(trap.hosts)


def load(url: str, folder: Path, *, trap_requests: bool = True, settle_ms: int = 0) -> Loaded:
    """Load ``url`` in headless Chromium: its DOM, its console messages, a screenshot, and the
    hosts of the requests that tried to leave the machine (through the trap proxy), less those
    Chromium makes on its own for a blank page. ``settle_ms``: virtual time the page's scripts
    get after loading (for a page that renders what it fetches)."""
    binary = chromium()
    own = _own_requests(binary, folder) if trap_requests else set()
    trap = RequestTrap() if trap_requests else None
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=folder))
    flags = [*FLAGS, f"--user-data-dir={profile}"]
    if settle_ms:
        flags.append(f"--virtual-time-budget={settle_ms}")
    if trap is not None:
        flags.append(f"--proxy-server=http://127.0.0.1:{trap.port}")
    try:
        dom = subprocess.run(
            [binary, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
        )
        shot = folder / "page.png"
        picture = subprocess.run(
            [binary, *flags, "--window-size=1280,1800", f"--screenshot={shot}", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if trap is not None:
            trap.close()
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert picture.returncode == 0 and shot.exists(), picture.stderr[-2000:]
    console = [line for line in (dom.stderr + picture.stderr).splitlines() if ":CONSOLE" in line]
    off = sorted({h for h in (trap.hosts if trap else []) if h not in own | BROWSER_HOSTS})
    return Loaded(dom.stdout, console, shot, off)


def distinct_pixels(png: Path) -> int:
    """How many distinct byte values the decoded image rows hold (1-2 for a blank page)."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            chunks.append(data[position + 8 : position + 8 + length])
        position += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return len(set(raw[:4_000_000]))
