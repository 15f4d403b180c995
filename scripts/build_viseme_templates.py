"""Rebuild flame_core's audio lip-sync templates from espeak-ng's own speech.

    python scripts/build_viseme_templates.py [OUT.npz]

Writes ``packages/flame-core/src/flame_core/data/viseme_templates.npz`` (or OUT): one Gaussian per
viseme over 10 ms spectral features, from ``headstudio.animate.speech.lipsync.TEMPLATE_SENTENCES`` spoken by
``TEMPLATE_VOICES`` and labelled by espeak-ng's phoneme events. Needs espeak-ng
(``apt-get install espeak-ng``); nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from headstudio.animate.speech.espeak import espeak_version
from headstudio.animate.speech.lipsync import (
    TEMPLATE_FILE,
    TEMPLATE_SENTENCES,
    TEMPLATE_VOICES,
    build_templates,
)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else TEMPLATE_FILE
    tpl = build_templates(TEMPLATE_SENTENCES, TEMPLATE_VOICES)
    tpl.save(out, espeak_version=espeak_version())
    print(
        f"wrote {out}: {len(tpl.classes)} visemes x {tpl.means.shape[1]} features "
        f"(espeak-ng {espeak_version()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
