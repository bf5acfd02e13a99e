"""A real browser for the admin panel's tests: Debian's Chromium, driven by Playwright (which is
given the browser's path, so it downloads none). When Chromium is missing it is installed from
Debian's packages (as root, with apt-get); where that cannot be done, `chromium()` says why in one
line, fit for `pytest.skip`."""

from __future__ import annotations

import functools
import shutil

from meshplate_testing.packages import installed

CANDIDATES = ("chromium", "chromium-browser")


def _found() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@functools.cache
def chromium() -> tuple[str | None, str]:
    """(the browser's path, "") or (None, why there is none)."""
    if _found() is None and (missing := installed(["chromium"], commands=["chromium"])):
        return None, f"no Chromium: {missing}"
    return _found(), ""
