"""MODEL_CARD.md for each shipped model: how it was made, what it costs, how well it does, and
the licence note its training faces impose."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

LICENCE_NOTE = (
    "Trained on CelebA faces (aligned, 10,000 images at 89x109 from ../shared/data/faces/celeba) and, "
    "where the data line names it, All-Age-Faces (7,994 images at ~300x340 from "
    "../shared/data/faces/allage); both are licensed for **non-commercial research only**, and these "
    "weights inherit that restriction. "
    "To use the models otherwise, retrain on your own faces: `python run.py train prepare --data DIR "
    "--dataset NAME` (DIR/NAME/ holds face photos of any framing: they are re-aligned with the project's "
    "template, and split lists engines/splits/NAME_*.txt are written), then `python run.py train all "
    "--data DIR --dataset NAME`."
)
OWN_DATA_NOTE = (
    "Trained on the faces of dataset `{dataset}` (engines/splits/{dataset}_*.txt); the licence of those "
    "images applies to these weights."
)

BENCH_START = "<!-- quality-benchmark -->"
BENCH_END = "<!-- /quality-benchmark -->"


def write_card(out_dir: Path, name: str, info: dict[str, Any], dataset: str = "celeba") -> Path:
    """Write the card; an existing benchmark section is kept so retraining does not lose it until
    the benchmark runs again."""
    path = out_dir / "MODEL_CARD.md"
    bench = ""
    if path.exists():
        m = re.search(re.escape(BENCH_START) + r".*?" + re.escape(BENCH_END), path.read_text(), re.S)
        bench = m.group(0) if m else ""
    lines = [f"# {name}", "", info.get("summary", ""), "", "| field | value |", "|---|---|"]
    for key in (
        "kind",
        "arch",
        "arch_kwargs",
        "gmac",
        "params",
        "command",
        "device",
        "seed",
        "steps",
        "train_seconds",
        "data",
        "split",
        "degradation",
        "codec",
        "final_losses",
        "trained",
    ):
        if key in info:
            val = info[key]
            val = json.dumps(val) if isinstance(val, (dict, list)) else str(val)
            lines.append(
                f"| {key} | `{val}` |" if key in ("command", "arch", "arch_kwargs") else f"| {key} | {val} |"
            )
    lines += [
        "",
        "MACs are counted per face over Conv2d layers (engines.arch.count_macs); "
        "step 1 x8 fast + step 2 fast must stay <= 0.15 GMAC.",
        "",
        "train_seconds is wall-clock; `steps` is what the run reached (a `--time-budget` ends a run "
        "sooner, decaying the learning rate over its last 40%). Retrain or continue with the command "
        "above (`--resume` continues from cache/ckpt/).",
        "",
        "Higher factors (x32 / x64 to 256 / 512 px) are configurations of the same design, not shipped: "
        "see engines/arch/__init__.py.",
        "",
        "## Licence of the training data",
        "",
        LICENCE_NOTE
        if set(dataset.split(",")) <= {"celeba", "allage"}
        else OWN_DATA_NOTE.format(dataset=dataset),
        "",
        "## Quality benchmark",
        "",
        bench or f"{BENCH_START}\nNot run yet: `python run.py bench quality`.\n{BENCH_END}",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def set_benchmark(out_dir: Path, text: str) -> None:
    """Replace the benchmark section of an existing card."""
    _set_block(out_dir, BENCH_START, BENCH_END, text)


def set_section(out_dir: Path, tag: str, text: str) -> None:
    """Replace (or append) the section marked `<!-- tag -->` of an existing card. Retraining
    rewrites the card without it, as it should: the section describes files made from the old
    weights (the int8 graphs)."""
    _set_block(out_dir, f"<!-- {tag} -->", f"<!-- /{tag} -->", text)


def _set_block(out_dir: Path, start: str, end: str, text: str) -> None:
    path = out_dir / "MODEL_CARD.md"
    if not path.exists():
        return
    block = f"{start}\n{text.strip()}\n{end}"
    body = path.read_text()
    pattern = re.escape(start) + r".*?" + re.escape(end)
    body = (
        re.sub(pattern, lambda _m: block, body, flags=re.S)
        if re.search(pattern, body, re.S)
        else body + block
    )
    path.write_text(body)
