"""`python -m ratelimit [serve|migrate]`."""

import sys

from meshplate_core.process import run_service
from ratelimit.server import migrate_only, serve
from ratelimit.settings import Settings

if __name__ == "__main__":
    sys.exit(
        run_service(
            service="ratelimit",
            load=Settings,
            commands={"serve": serve, "migrate": migrate_only},
            argv=sys.argv[1:],
        )
    )
