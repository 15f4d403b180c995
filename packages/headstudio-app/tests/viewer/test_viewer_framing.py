"""The viewer frames the head in the part of the canvas that its settings panel leaves free."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.slow]  # headless chromium


def head_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` (exclusive) of the pixels that differ from the white
    background."""
    ys, xs = np.nonzero(np.abs(img - 1.0).sum(-1) > 0.03)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def panel_rect(page: Any) -> dict[str, float]:
    return page.js(
        "(() => { const r = window.headstudio.viewer.gui.domElement.getBoundingClientRect();"
        " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; })()"
    )


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_the_head_is_centred_in_the_part_the_panel_leaves_free(
    open_page: Any, teacher: Any, serve: Any, size: tuple[int, int]
) -> None:
    page = open_page(serve(teacher).url, size)
    width, height = size
    img = page.image()
    assert img.shape[:2] == (height, width)
    assert not page.js("window.headstudio.viewer.gui._closed")  # the panel is open at this width
    panel = panel_rect(page)
    left, top, right, bottom = head_box(img)
    # no overlap with the panel (the panel sits on the right, over the full canvas height or part)
    overlaps = (
        right > panel["left"] and left < panel["right"] and bottom > panel["top"] and top < panel["bottom"]
    )
    assert not overlaps, ((left, top, right, bottom), panel)
    # centred in the free columns (to within 5 % of their width) and not shrunk to a dot
    free = panel["left"]
    assert abs((left + right) / 2 - free / 2) < 0.05 * free, ((left, right), free)
    assert right - left > 0.35 * free and bottom - top > 0.5 * height
    # the same view without the panel: centred in the whole canvas
    page.js("window.headstudio.viewer.gui.close()")
    page.settle()
    assert page.js("window.headstudio.framing().offsetX") == 0
    left2, _, right2, _ = head_box(page.image())
    assert abs((left2 + right2) / 2 - width / 2) < 0.03 * width
    assert (left2 + right2) / 2 > (left + right) / 2 + 0.1 * (width - free)  # it moved back right
    assert page.errors == []


def test_small_windows_keep_the_renderers_view(open_page: Any, teacher: Any, serve: Any) -> None:
    """Below 600 px the panel starts closed: no offset, no zoom (the fidelity tests' view); opened
    over most of a small canvas, it leaves no free part to move the head into."""
    page = open_page(serve(teacher).url)
    assert page.js("window.headstudio.viewer.gui._closed")
    assert page.js("window.headstudio.framing()") == {"offsetX": 0, "zoom": 1, "free": None}
    page.js("window.headstudio.viewer.gui.open()")
    page.settle()
    assert page.js("window.headstudio.framing()")["offsetX"] == 0
    assert page.errors == []
