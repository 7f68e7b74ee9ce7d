"""Browser fixtures: Debian's headless Chromium driven by Playwright (no browser download) against a real
``soundscape serve`` of the bundled model, every request to anything but this machine blocked.

Chromium comes from ``scripts/ensure_chromium.sh`` (``apt-get install chromium`` when missing; ``make test``
and so ``.ci/run`` call it too); the tests skip, saying why, only when it cannot be installed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, Route, sync_playwright

from model_store import default_store_path
from tests.utils.server import Server

ROOT = Path(__file__).resolve().parents[2]
# Screenshots and the draw time go to a temporary folder, or, with this variable set (`make ui`), to the folder
# it names (the README's images: bench/results/ui), so a test run never rewrites committed files.
SCREENSHOTS_ENV = "SOUNDSCAPE_UI_SCREENSHOTS"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Root in a container needs --no-sandbox; media flags: autoplay without a click, a fake microphone (a beep).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--mute-audio"]


def chromium_path() -> str:
    """The Chromium binary, installed by scripts/ensure_chromium.sh when missing; skips when it cannot be."""
    run = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_chromium.sh")], capture_output=True, text=True,
                         timeout=1200)
    path = run.stdout.strip().splitlines()[-1] if run.returncode == 0 and run.stdout.strip() else ""
    if not path:
        pytest.skip(f"no Chromium and it could not be installed (scripts/ensure_chromium.sh: "
                    f"{run.stderr.strip()[-500:] or 'exit ' + str(run.returncode)})")
    return path


@pytest.fixture(scope="package")  # closed when tests/ui ends: its event loop would break later asyncio.run()
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


class OfflineContext:
    """A browser context where every request that is not to this machine is aborted and recorded."""

    def __init__(self, browser: Browser) -> None:
        self.blocked: list[str] = []
        self.context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 900},
                                                           accept_downloads=True)
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("internetdisconnected")


@pytest.fixture()
def offline(browser: Browser) -> Iterator[OfflineContext]:
    ctx = OfflineContext(browser)
    yield ctx
    ctx.context.close()
    assert not ctx.blocked, f"the page tried to reach the internet: {ctx.blocked}"


@pytest.fixture(scope="session")
def bundled_server(tmp_path_factory) -> Iterator[Server]:
    """``soundscape serve`` of the bundled model (the real one the README shows)."""
    srv = Server(tmp_path_factory.mktemp("ui-server"), default_store_path())
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def demo_soundscape(tmp_path_factory) -> Path:
    """A one-minute demo soundscape (clean profile, the data the bundled model knows)."""
    from soundscape.demo import generate_dataset

    root = generate_dataset(tmp_path_factory.mktemp("ui-demo") / "demo", seed=0, size="tiny")
    return root / "soundscapes" / "sc0000.ogg"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return tmp_path_factory.mktemp("ui-screenshots")
    path = Path(folder) if Path(folder).is_absolute() else ROOT / folder
    path.mkdir(parents=True, exist_ok=True)
    return path
