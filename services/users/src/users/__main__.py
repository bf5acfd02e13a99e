"""`python -m users [serve|migrate]`."""

import sys

from meshplate_core.process import run_service
from users.server import migrate_only, serve
from users.settings import Settings

if __name__ == "__main__":
    sys.exit(
        run_service(
            service="users",
            load=Settings,
            commands={"serve": serve, "migrate": migrate_only},
            argv=sys.argv[1:],
        )
    )
