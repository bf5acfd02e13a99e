"""Mutual TLS on every gRPC hop: credentials from a workload's folder, the caller's identity.

A workload's folder holds `ca.crt` (the trust anchor), `tls.crt` and `tls.key` (its own
certificate, whose URI SAN is its SPIFFE ID: meshplate_core.pki), the layout of a Kubernetes TLS
secret. Servers require a client certificate of the same CA, so a caller without one never gets
past the handshake; a server reads its files again on the next connection after `tls.crt`
changes (cert-manager renews in place), and a client checks the server it reached by the
server's workload name (its DNS SAN), wherever the server listens.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

TRUST_DOMAIN = "meshplate"
# A Kubernetes TLS secret's keys, as cert-manager writes them.
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
_SPIFFE_PREFIX = b"spiffe://"


def spiffe_id(name: str) -> str:
    """The SPIFFE ID of a workload."""
    return f"spiffe://{TRUST_DOMAIN}/{name}"


def workload_name(identity: str) -> str | None:
    """The workload a SPIFFE ID of our trust domain names (None for any other ID)."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    if identity.startswith(prefix) and "/" not in identity[len(prefix) :]:
        return identity[len(prefix) :] or None
    return None


class TlsFilesError(ValueError):
    """A workload's TLS folder is missing a file, or a file cannot be read."""


@dataclass(frozen=True)
class Material:
    """A workload's trust anchor, certificate and key, in PEM."""

    ca: bytes
    certificate: bytes
    key: bytes


@dataclass(frozen=True)
class Tls:
    """The TLS folder of this process's workload."""

    folder: Path

    def read(self) -> Material:
        """The folder's files, read now."""
        try:
            return Material(
                ca=(self.folder / CA_FILE).read_bytes(),
                certificate=(self.folder / CERT_FILE).read_bytes(),
                key=(self.folder / KEY_FILE).read_bytes(),
            )
        except OSError as exc:
            raise TlsFilesError(
                f"TLS_DIR {self.folder}: needs {CA_FILE}, {CERT_FILE} and {KEY_FILE} ({exc})"
            ) from None

    def version(self) -> tuple[int, int, int]:
        """What changes when the certificate is replaced (its file's inode, size and time)."""
        try:
            stat = os.stat(self.folder / CERT_FILE)
        except OSError:
            return (0, 0, 0)
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def on_renewal(self, build: Callable[[], T]) -> Callable[[], T | None]:
        """A check cheap enough for every handshake (one stat): None while `tls.crt` is the one
        seen last, else `build()` made again from the renewed files (None too, logged, when they
        are caught half-written: the current ones are kept, and the next check tries again)."""
        seen = [self.version()]

        def renewed() -> T | None:
            version = self.version()
            if version == seen[0]:
                return None
            try:
                fresh = build()
            except (TlsFilesError, ssl.SSLError) as exc:
                log.warning("keeping the current certificate: %s", exc)
                return None
            seen[0] = version
            log.info("using a renewed certificate from %s", self.folder)
            return fresh

        return renewed

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials of a server that requires a client certificate of its CA, read again from
        the folder on the next connection after the certificate changed (gRPC asks before every
        handshake)."""

        def configuration() -> Any:
            material = self.read()
            return grpc.ssl_server_certificate_configuration(
                [(material.key, material.certificate)], root_certificates=material.ca
            )

        # None from the fetcher means "no change" to gRPC (its stubs allow no None).
        fetch: Callable[[], Any] = self.on_renewal(configuration)
        return grpc.dynamic_ssl_server_credentials(
            configuration(), fetch, require_client_authentication=True
        )

    def http_server_context(self) -> ssl.SSLContext:
        """An HTTPS server's context (the gateway's, for Envoy): a client certificate of the CA
        required, this workload's certificate served, read again on the first handshake after
        `tls.crt` changed."""
        current = [self._http_context()]
        renewed = self.on_renewal(self._http_context)

        def renew(connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
            # OpenSSL asks this at every ClientHello, before the certificate is chosen.
            if (fresh := renewed()) is not None:
                current[0] = fresh
            connection.context = current[0]

        current[0].sni_callback = renew
        return current[0]

    def _http_context(self) -> ssl.SSLContext:
        material = self.read()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=material.ca.decode())
        # The key and certificate go through files (the ssl module reads no key from memory).
        context.load_cert_chain(self.folder / CERT_FILE, self.folder / KEY_FILE)
        context.set_alpn_protocols(["http/1.1"])
        return context

    def http_client_context(self) -> ssl.SSLContext:
        """An HTTPS client's context presenting this workload's certificate (the gateway's own
        probe), checking the server's chain against the CA."""
        context = ssl.create_default_context(cadata=self.read().ca.decode())
        # Probes call 127.0.0.1; the chain is checked, and every certificate names localhost.
        context.check_hostname = False
        context.load_cert_chain(self.folder / CERT_FILE, self.folder / KEY_FILE)
        return context

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a client presenting this workload's certificate."""
        material = self.read()
        return grpc.ssl_channel_credentials(
            root_certificates=material.ca,
            private_key=material.key,
            certificate_chain=material.certificate,
        )


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The workload name in the caller's certificate: its one SPIFFE ID of our trust domain among
    the subject alternative names (None without one, with several, or on a plaintext port).

    Read from the peer's identities (its SANs), a tenth of the cost of the whole auth context,
    on every call of a table's RPC."""
    names = [
        name
        for identity in context.peer_identities() or ()
        if identity.startswith(_SPIFFE_PREFIX)
        and (name := workload_name(identity.decode(errors="replace"))) is not None
    ]
    return names[0] if len(names) == 1 else None
