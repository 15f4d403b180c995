"""Fixtures of the browser viewer's tests: small avatars, headless Chromium, a running server.

The browser is Debian's ``chromium`` (``.ci/run`` installs it) driven by Playwright's Python
package, with software WebGL2 (SwiftShader). Every browser test carries the ``browser`` xdist
group, so under ``pytest -n 2 --dist loadgroup`` one worker runs them all with one browser.
"""

from __future__ import annotations

import base64
import io
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

CHROMIUM_ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]
#: Canvas size of the browser tests (small: SwiftShader renders on the CPU).
SIZE = 128


def chromium_path() -> str:
    """Debian's chromium (``HEADSTUDIO_CHROMIUM`` overrides); fails with the fix when missing."""
    path = os.environ.get("HEADSTUDIO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            f"chromium not found ({path}); install it (`apt-get install -y chromium`, as .ci/run does) "
            "or point HEADSTUDIO_CHROMIUM at a Chromium binary."
        )
    return path


@pytest.fixture(scope="session")
def head() -> Any:
    from flame_core import FlameModel

    return FlameModel.procedural()


@pytest.fixture(scope="session")
def teacher(head: Any) -> Any:
    """The textured teacher avatar, one Gaussian per triangle plus its hair volume (24,071)."""
    from headstudio.demo.teacher import build_teacher_avatar

    return build_teacher_avatar(head, points_per_face=1)


@pytest.fixture(scope="session")
def teacher_path(teacher: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return teacher.save(tmp_path_factory.mktemp("avatars") / "teacher.ply")


@pytest.fixture(scope="session")
def hard_avatar(head: Any, teacher: Any) -> Any:
    """The teacher made harder to match: SH degree 3 (random view-dependent colour), random
    opacities 0.3–0.99, non-unit quaternions, a non-zero shape."""
    from headstudio.avatar import Avatar

    g = torch.Generator().manual_seed(1)
    n = teacher.num_gaussians
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = teacher.sh[:, 0].detach()
    sh[:, 1:] = 0.15 * torch.randn(n, 15, 3, generator=g)
    shape = torch.zeros(1, head.num_shape)
    shape[0, :10] = torch.randn(10, generator=g)
    opacity = torch.logit(0.3 + 0.69 * torch.rand(n, generator=g))
    quats = teacher.quats.detach() * (0.5 + torch.rand(n, 1, generator=g))
    return Avatar(
        head, teacher.means.detach(), quats, teacher.log_scales.detach(), opacity, sh, teacher.face_ids, shape
    )


@pytest.fixture(scope="session")
def hard_path(hard_avatar: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hard_avatar.save(tmp_path_factory.mktemp("avatars") / "hard.ply")


@pytest.fixture(scope="session")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s, 16 kHz mono 440 Hz tone."""
    from scipy.io import wavfile

    p = tmp_path_factory.mktemp("audio") / "tone.wav"
    t = np.arange(3 * 16000) / 16000
    wavfile.write(p, 16000, (0.2 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16))
    return p


@pytest.fixture(scope="session")
def browser(playwright_driver: Any) -> Iterator[Any]:
    b = playwright_driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


class Page:
    """One page of the viewer with its console collected (``errors``: console errors + exceptions)."""

    def __init__(self, browser: Any, size: int | tuple[int, int] = SIZE, offline: bool = False) -> None:
        width, height = (size, size) if isinstance(size, int) else size
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=1, offline=offline
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> Page:
        self.page.goto(url)
        self.page.wait_for_function(
            "window.headstudioReady === true || !!window.headstudioError", timeout=120_000
        )
        err = self.page.evaluate("window.headstudioError || null")
        assert err is None, f"the viewer failed to start: {err}; console: {self.errors}"
        self.settle()
        return self

    def settle(self, timeout_ms: int = 120_000) -> None:
        """Wait until the latest state is drawn (fails instead of hanging)."""
        self.page.evaluate(
            """(ms) => Promise.race([window.headstudio.settled(), new Promise((_, reject) =>
                setTimeout(() => reject(new Error(`not settled after ${ms} ms`)), ms))])""",
            timeout_ms,
        )

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def set_state(self, partial: dict[str, Any]) -> np.ndarray:
        """Apply a state change and return the settled image."""
        self.js("(p) => window.headstudio.setState(p)", partial)
        self.settle()
        return self.image()

    def image(self) -> np.ndarray:
        """The canvas as ``[H, W, 3]`` float in 0..1 (no page overlays)."""
        from PIL import Image

        url = self.js("window.headstudio.screenshot()")
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        return np.asarray(img).astype(np.float64) / 255.0

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def make(url: str, size: int | tuple[int, int] = SIZE, offline: bool = False) -> Page:
        p = Page(browser, size, offline)
        pages.append(p)
        return p.open(url)

    yield make
    for p in pages:
        p.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in 0..1."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ``ViewerServer``s on free ports; stopped after the test."""
    servers = []

    def start(avatar: Any, **kw: Any) -> Any:
        from headstudio.output.viewer import ViewerServer, build_viewer_data

        data = kw.pop("data", None) or build_viewer_data(avatar)
        srv = ViewerServer(avatar, data, port=0, **kw)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()
