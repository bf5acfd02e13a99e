"""Which workloads may call which RPCs: one explicit table per service.

Each service declares, for every RPC of its contract, the workloads (by the name in their
certificate's SPIFFE ID, meshplate_core.pki) allowed to call it; a call from anyone else is
refused with PERMISSION_DENIED before it reaches the service (meshplate_core.interceptors).
Operators add their own callers per service by setting (`<SERVICE>_GRANTS`, e.g.
`{"billing": ["GetUser", "ListUsers"]}`), never by editing the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor


@dataclass(frozen=True)
class Callers:
    """The callers allowed for each RPC of one service (every RPC named, none unknown)."""

    service: str
    table: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, service: ServiceDescriptor, table: Mapping[str, Iterable[str]]) -> Callers:
        """The table for `service`; ValueError unless it names exactly its RPCs."""
        methods = {method.name for method in service.methods}
        if missing := methods - table.keys():
            raise ValueError(f"{service.full_name}: no callers for {', '.join(sorted(missing))}")
        if unknown := table.keys() - methods:
            raise ValueError(f"{service.full_name}: no RPC named {', '.join(sorted(unknown))}")
        return cls(service.full_name, {name: frozenset(who) for name, who in table.items()})

    def allowed(self, method: str) -> frozenset[str]:
        """Who may call `method` (a name of this service's RPCs)."""
        return self.table[method]


def granted(tables: Sequence[Callers], grants: Mapping[str, Iterable[str]]) -> list[Callers]:
    """The tables with `grants` (caller -> RPC names) added; ValueError for an RPC none has."""
    merged = [dict(table.table) for table in tables]
    for caller, methods in grants.items():
        for method in methods:
            owners = [table for table in merged if method in table]
            if not owners:
                raise ValueError(f"no RPC named {method} here (granted to {caller})")
            for table in owners:
                table[method] = table[method] | {caller}
    return [Callers(table.service, new) for table, new in zip(tables, merged, strict=True)]
