"""PKI for the local control plane: one CA, a serving cert, client certs and the SA keypair.

ECDSA P-256 keeps generation in the low milliseconds, so every cluster gets fresh material
instead of sharing keys between runs. The service-account key stays RSA because that is
what every token consumer (client libraries, OIDC discovery users) handles without surprises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_DOMAIN = "cluster.local"
# First address of the service range: the apiserver gives it to the `kubernetes` Service,
# so in-cluster clients dial it and the serving cert must name it.
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"

_VALIDITY = dt.timedelta(days=365)


@dataclasses.dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclasses.dataclass(frozen=True)
class PKI:
    dir: Path
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    sa_key: Path  # private, PEM (signing)
    sa_pub: Path  # public, PEM (verification)

    def issue_client(self, name: str, common_name: str, organizations: list[str] | tuple[str, ...] = ()) -> CertPair:
        """Client cert signed by the cluster CA; lets tests act as arbitrary users/groups
        through real x509 authentication rather than impersonation."""
        ca_key = _load_key(self.ca.key)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        return _client(self.dir, name, common_name, list(organizations), ca_cert, ca_key)


def _name(cn: str, orgs: list[str] = ()) -> x509.Name:  # type: ignore[assignment]
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _write(dir_: Path, name: str, cert: x509.Certificate, key) -> CertPair:
    cp = CertPair(dir_ / f"{name}.crt", dir_ / f"{name}.key")
    cp.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cp.key.write_bytes(_key_pem(key))
    cp.key.chmod(0o600)
    return cp


def _builder(subject: x509.Name, issuer: x509.Name, pub, ca: bool = False) -> x509.CertificateBuilder:
    """A certificate of ``subject`` signed by ``issuer``: the CA signs certificates, every other
    one only proves its key (digital signature)."""
    # Backdated a little: a freshly started component must not see a cert "from the future"
    # when clocks are compared at second granularity.
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    usage = x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
    )


def _leaf(
    subject: x509.Name, ca_cert: x509.Certificate, pub, purpose: x509.ObjectIdentifier
) -> x509.CertificateBuilder:
    """A client or server certificate issued by the local CA."""
    return _builder(subject, ca_cert.subject, pub).add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)


def _client(dir_: Path, name: str, cn: str, orgs: list[str], ca_cert: x509.Certificate, ca_key) -> CertPair:
    key = _new_key()
    cert = _leaf(_name(cn, orgs), ca_cert, key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH).sign(
        ca_key, hashes.SHA256()
    )
    return _write(dir_, name, cert, key)


def generate(dir_: Path, extra_sans: list[str] | tuple[str, ...] = ()) -> PKI:
    dir_.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = _name("onair-local-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(dir_, "ca", ca_cert, ca_key)

    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    ]
    ips = ["127.0.0.1", "::1", KUBERNETES_SERVICE_IP]
    for san in extra_sans:
        try:
            ipaddress.ip_address(san)
            ips.append(san)
        except ValueError:
            dns.append(san)
    srv_key = _new_key()
    srv_cert = (
        _leaf(_name("kube-apiserver"), ca_cert, srv_key.public_key(), ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    apiserver = _write(dir_, "apiserver", srv_cert, srv_key)

    admin = _client(dir_, "admin", "onair-admin", ["system:masters"], ca_cert, ca_key)
    kcm = _client(dir_, "kube-controller-manager", "system:kube-controller-manager", [], ca_cert, ca_key)

    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key, sa_pub = dir_ / "sa.key", dir_ / "sa.pub"
    sa_key.write_bytes(_key_pem(sa))
    sa_key.chmod(0o600)
    sa_pub.write_bytes(
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return PKI(dir=dir_, ca=ca, apiserver=apiserver, admin=admin, controller_manager=kcm, sa_key=sa_key, sa_pub=sa_pub)
