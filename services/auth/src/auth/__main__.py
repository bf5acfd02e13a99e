"""`python -m auth [serve|migrate]`."""

import sys

from auth.server import migrate_only, serve
from auth.settings import Settings
from meshplate_core.process import run_service

if __name__ == "__main__":
    sys.exit(
        run_service(
            service="auth",
            load=Settings,
            commands={"serve": serve, "migrate": migrate_only},
            argv=sys.argv[1:],
        )
    )
