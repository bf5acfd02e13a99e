"""A private certificate authority and workload certificates, for local runs, compose and tests.

Each workload (gateway, auth, users, ratelimit, worker, envoy, or another team's service) gets a
certificate whose identity is a SPIFFE ID in its URI SAN, `spiffe://meshplate/<name>`, and whose
DNS SANs are its name and `localhost`, so a client can check the server it reached by name
(meshplate_core.mtls) wherever the server listens. Each workload's folder has the layout of a
Kubernetes TLS secret as cert-manager writes it (`ca.crt`, `tls.crt`, `tls.key`), so the same
setting (`TLS_DIR`) reads what this module makes and what a cluster mounts.

    python -m meshplate_core.pki var/tls gateway auth users ratelimit worker envoy
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplate_core.mtls import CA_FILE, CERT_FILE, KEY_FILE, TRUST_DOMAIN, spiffe_id

# A local CA lives a decade; a workload's certificate ninety days, renewed by `ensure` once it is
# past two thirds of its life (cert-manager's default in a cluster).
CA_DAYS = 3650
LEAF_DAYS = 90
_SKEW = datetime.timedelta(minutes=5)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Authority:
    """A CA's certificate and key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, *, days: int = CA_DAYS) -> Authority:
        """A new CA (EC P-256), valid for `days`."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{TRUST_DOMAIN} local CA")])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, folder: Path) -> Authority:
        """The CA saved in `folder` by `save`."""
        certificate = x509.load_pem_x509_certificate((folder / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{folder / 'ca.key'}: not an EC private key")
        return cls(certificate, key)

    def save(self, folder: Path) -> None:
        """Write `ca.crt` and `ca.key` (readable by the owner only) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "ca.key", _pem(self.key), private=True)
        _write(folder / CA_FILE, self.pem)

    @property
    def pem(self) -> bytes:
        """The CA's certificate in PEM: what every workload trusts."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, days: int = LEAF_DAYS) -> Issued:
        """A certificate for workload `name`, for client and server use."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(name)),
                        x509.DNSName(name),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(
            ca=self.pem,
            certificate=certificate.public_bytes(serialization.Encoding.PEM),
            key=_pem(key),
        )


@dataclass(frozen=True)
class Issued:
    """A workload's trust anchor, certificate and key, in PEM."""

    ca: bytes
    certificate: bytes
    key: bytes

    def save(self, folder: Path) -> Path:
        """Write `ca.crt`, `tls.crt` and `tls.key` into `folder` (the key readable by the owner
        only; the certificate last, so a watcher that sees it changed reads a matching key)."""
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / CA_FILE, self.ca)
        _write(folder / KEY_FILE, self.key, private=True)
        _write(folder / CERT_FILE, self.certificate)
        return folder


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace `path` at once (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600 if private else 0o644)
    partial.write_bytes(data)
    partial.replace(path)


def _current(folder: Path, authority: Authority) -> bool:
    """Whether `folder` holds a certificate of `authority` before two thirds of its life."""
    try:
        certificate = x509.load_pem_x509_certificate((folder / CERT_FILE).read_bytes())
        if not (folder / KEY_FILE).is_file() or (folder / CA_FILE).read_bytes() != authority.pem:
            return False
    except (OSError, ValueError):
        return False
    begins, ends = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return (
        certificate.issuer == authority.certificate.subject
        and _now() < begins + (ends - begins) * 2 / 3
    )


def ensure(root: Path, names: list[str]) -> dict[str, Path]:
    """A local CA in `root/ca` (made on first use) and a current certificate for each workload
    in `root/<name>` (issued when missing, from another CA, or due for renewal); the folders."""
    ca_folder = root / "ca"
    try:
        authority = Authority.load(ca_folder)
    except (OSError, ValueError):
        authority = Authority.create()
        authority.save(ca_folder)
    folders = {}
    for name in names:
        folder = root / name
        if not _current(folder, authority):
            authority.issue(name).save(folder)
        folders[name] = folder
    return folders


def main(argv: list[str]) -> int:
    """`python -m meshplate_core.pki <root> <name>...` (see the module docstring)."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)  # noqa: T201
        return 2
    for name, folder in ensure(Path(argv[0]), argv[1:]).items():
        print(f"{name}: {folder}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
