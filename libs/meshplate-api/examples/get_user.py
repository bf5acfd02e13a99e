"""Read one user from Meshplate's users service, as another team's workload would.

    python get_user.py <users address> <your TLS folder> <username>

The folder holds your workload's `ca.crt`, `tls.crt` and `tls.key`; the operator must have
granted your workload `GetUser` (USERS_GRANTS). Prints the user's id, username and name.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from meshplate.client import Workload
from meshplate.users.v1 import users_pb2, users_pb2_grpc


async def main(target: str, folder: str, username: str) -> int:
    me = Workload.from_folder(folder)
    async with me.channel(target, "users") as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        try:
            reply = await users.GetUser(users_pb2.GetUserRequest(username=username), timeout=5)
        except grpc.aio.AioRpcError as exc:
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)  # noqa: T201
            return 1
    print(reply.user.id, reply.user.username, reply.user.name)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
