"""Render a run's HTML report in a real headless browser (Debian's `chromium`) and check what a reader sees.

The page is opened through the DevTools protocol over `--remote-debugging-pipe` (a dozen JSON messages, no
dependency): the script records console errors, uncaught exceptions and every request that is not the page
itself or a data: URI (a self-contained page makes none), lists the page's section headings, and saves a
full-page screenshot. It fails when there is a console error, an outside request, or a missing section.

    python bench/report_browser.py [--run-dir runs/demo-eu] [--out report-browser] [--sections Run,Evaluation]

Without --run-dir it uses runs/demo-eu (make it with `langadapt demo`). The report is rebuilt from the run's
manifests with this checkout's code. tests/report/test_browser.py runs the same check on a constructed run
(opt-in marker `browser`; skipped when chromium is absent).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run as `python bench/report_browser.py` from a checkout
    sys.path.insert(0, str(REPO / "src"))

EXPECTED_SECTIONS = ("Run", "Stages", "Data", "Tokenizer", "Embedding initialisation", "Training",
                     "Learned Embedding Propagation", "Evaluation", "What each stage bought", "Sample generations",
                     "Provenance")
HEADINGS_JS = "JSON.stringify([...document.querySelectorAll('h2')].map(h => h.textContent))"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    headings: list[str]
    console_errors: list[str]
    outside_requests: list[str]
    screenshot: bytes
    width: int
    height: int
    seconds: float
    svgs: int = 0
    problems: list[str] = field(default_factory=list)


def _above_stdio(fd: int) -> int:
    """The same pipe end at an fd ≥ 10, so moving the child's ends to 3 and 4 cannot overwrite one another."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """The DevTools protocol over chromium's pipe (fd 3: commands in, fd 4: replies and events out,
    NUL-terminated JSON)."""

    def __init__(self, chromium: str, profile: Path):
        commands_r, self._commands = map(_above_stdio, os.pipe())
        self._replies, replies_w = map(_above_stdio, os.pipe())
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--hide-scrollbars", f"--user-data-dir={profile}", "about:blank"]
        # the child gets the pipe ends at fds 3 and 4 (the parent's copies are close-on-exec), output to /dev/null
        actions = [(os.POSIX_SPAWN_DUP2, commands_r, 3), (os.POSIX_SPAWN_DUP2, replies_w, 4),
                   *((os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2))]
        self.pid = os.posix_spawn(chromium, [chromium, *args], os.environ, file_actions=actions)
        os.close(commands_r)
        os.close(replies_w)
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        for _ in range(100):  # up to 10 s for chromium to exit by itself
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self._commands)
        os.close(self._replies)


def check_page(page: Path, expected: tuple[str, ...] = EXPECTED_SECTIONS, *, width: int = 1280,
               chromium: str | None = None) -> PageCheck:
    """Open `page` in headless chromium; its headings, console errors, outside requests and a screenshot."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found — apt-get install -y chromium")
    started = time.perf_counter()
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(chromium, Path(profile))
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                tools.send(f"{domain}.enable", session=session)
            tools.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                              "mobile": False}, session=session)
            tools.send("Page.navigate", {"url": url}, session=session)
            tools.wait_for("Page.loadEventFired")
            evaluate = {"expression": HEADINGS_JS, "returnByValue": True}
            headings = json.loads(tools.send("Runtime.evaluate", evaluate, session=session)["result"]["value"])
            svgs = tools.send("Runtime.evaluate", {"expression": "document.querySelectorAll('svg').length",
                                                   "returnByValue": True}, session=session)["result"]["value"]
            size = tools.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            height = int(size["height"])
            shot = tools.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session=session, timeout=60)
        finally:
            tools.close()
    errors, outside = [], []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requested = params.get("request", {}).get("url", "")
            if requested != url and not requested.startswith("data:"):
                outside.append(requested)
    result = PageCheck(headings, errors, outside, base64.b64decode(shot["data"]), width, height,
                       time.perf_counter() - started, svgs)
    result.problems = ([f"console error: {e}" for e in errors] + [f"outside request: {u}" for u in outside]
                       + [f"missing section: {s}" for s in expected if s not in headings])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "demo-eu")
    parser.add_argument("--out", type=Path, default=REPO / "report-browser")
    parser.add_argument("--sections", default=None,
                        help="headings the page must show (default: every section the run has stages for)")
    args = parser.parse_args()

    from langadapt.report.html import load_run, render_report

    if not (args.run_dir / "run-config.json").is_file():
        print(f"no run at {args.run_dir} — make one with `langadapt demo` or pass --run-dir", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    page = render_report(load_run(args.run_dir, exclude=("report",)))
    render_seconds = time.perf_counter() - started
    html_path = args.out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    expected = (tuple(s for s in args.sections.split(",") if s) if args.sections is not None else
                tuple(s for s in EXPECTED_SECTIONS if s != "Learned Embedding Propagation"
                      or (args.run_dir / "lep" / "manifest.json").is_file()))
    check = check_page(html_path, expected)
    (args.out / "report.png").write_bytes(check.screenshot)
    print(f"page: {html_path} ({len(page.encode()) / 1024:.0f} KiB, rendered in {render_seconds:.2f} s, "
          f"{check.svgs} inline SVG plots)")
    print(f"browser: {check.seconds:.1f} s, screenshot {check.width}×{check.height} px → {args.out / 'report.png'}")
    print(f"sections: {', '.join(check.headings)}")
    print(f"console errors: {len(check.console_errors)}, outside requests: {len(check.outside_requests)}")
    for problem in check.problems:
        print(f"FAIL {problem}")
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main())
