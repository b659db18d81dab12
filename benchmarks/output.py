"""Where every benchmark's results go besides its printed table: one JSON file when asked, written
the same way everywhere so docs/bench/ stays uniform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | Path | None, results: Any) -> None:
    """`results` as indented JSON at `path` (its folder made); nothing when no path was given.
    Values JSON does not know (paths, numpy scalars) are written as their text."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
