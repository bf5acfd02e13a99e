"""The published client's channel policy, read from the contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshplate.client import SERVICES, Workload, channel_options, metadata, service_config


def test_only_rpcs_the_contract_marks_idempotent_are_retried() -> None:
    config = service_config([SERVICES["users"]], timeout_s=2.0)

    retried = {
        name["method"]
        for entry in config["methodConfig"]
        if "retryPolicy" in entry
        for name in entry["name"]
    }

    assert {"GetUser", "ListUsers", "UpdateUser", "DeleteUser"} <= retried
    assert {"CreateUser", "CreatePost", "CreateTier"}.isdisjoint(retried)


def test_channels_balance_over_healthy_replicas_and_check_the_servers_name() -> None:
    options = dict(channel_options([SERVICES["auth"]], timeout_s=2.5, server="auth"))
    config = json.loads(options["grpc.service_config"])

    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "meshplate.liveness"}
    # A backstop above the deadline each call sets (gRPC Python applies it early).
    assert all(entry["timeout"] == "7.500s" for entry in config["methodConfig"])
    assert options["grpc.ssl_target_name_override"] == "auth"


def test_an_unknown_service_and_a_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Workload.from_folder(tmp_path)
    workload = Workload(ca=b"", certificate=b"", key=b"")
    with pytest.raises(ValueError, match="no Meshplate service named 'billing'"):
        workload.channel("127.0.0.1:1", "billing")


def test_metadata_carries_the_request_id_and_the_end_users_token() -> None:
    assert metadata() == ()
    assert metadata(request_id="r-1", token="abc") == (
        ("x-request-id", "r-1"),
        ("authorization", "Bearer abc"),
    )
