"""`make pins`: copy every resolved version from uv.lock into `[tool.uv] constraint-dependencies`.

uv.lock stays untracked (it records download addresses), so the root pyproject.toml carries the
whole resolved set instead: direct dependencies are pinned exactly in each member, and this list
fixes every transitive one, so every install resolves the same versions.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"constraint-dependencies = \[\n(?:    .*\n)*\]\n")


def main() -> int:
    """Rewrite the constraint list; exit 1 when uv.lock is missing."""
    lock_file = ROOT / "uv.lock"
    if not lock_file.exists():
        print("pins: no uv.lock; run `uv lock` first", file=sys.stderr)  # noqa: T201
        return 1
    lock = tomllib.loads(lock_file.read_text())
    pins = [
        f'    "{package["name"]}=={package["version"]}",'
        for package in sorted(lock["package"], key=lambda package: package["name"])
        if "registry" in package.get("source", {})
    ]
    block = "constraint-dependencies = [\n" + "\n".join(pins) + "\n]\n"
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text()
    if BLOCK.search(text):
        text = BLOCK.sub(block, text)
    else:
        text = text.replace("[tool.uv]\n", "[tool.uv]\n" + block, 1)
    pyproject.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
