"""``python -m headstudio.cli``."""

from . import main

raise SystemExit(main())
