"""The generated PKI has what kube-apiserver and its clients check for."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onair.localcluster import certs
from onair.localcluster.cluster import kubeconfig_dict


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert, oid):
    return [a.value for a in cert.subject.get_attributes_for_oid(oid)]


def test_pki_layout_and_identities(tmp_path):
    pki = certs.generate(tmp_path)
    ca = _load(pki.ca.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    srv = _load(pki.apiserver.cert)
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= set(
        san.get_values_for_type(x509.DNSName)
    )
    ips = set(san.get_values_for_type(x509.IPAddress))
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address(certs.KUBERNETES_SERVICE_IP) in ips
    assert ExtendedKeyUsageOID.SERVER_AUTH in srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    admin = _load(pki.admin.cert)
    assert _names(admin, NameOID.ORGANIZATION_NAME) == ["system:masters"]
    kcm = _load(pki.controller_manager.cert)
    assert _names(kcm, NameOID.COMMON_NAME) == ["system:kube-controller-manager"]
    for c in (srv, admin, kcm):
        c.verify_directly_issued_by(ca)
        assert c.not_valid_before_utc < c.not_valid_after_utc

    sa_priv = serialization.load_pem_private_key(pki.sa_key.read_bytes(), None)
    sa_pub = serialization.load_pem_public_key(pki.sa_pub.read_bytes())
    assert sa_priv.public_key().public_numbers() == sa_pub.public_numbers()
    assert (pki.admin.key.stat().st_mode & 0o077) == 0


def test_issue_client_for_arbitrary_user(tmp_path):
    pki = certs.generate(tmp_path)
    pair = pki.issue_client("bob", "bob", ["g1", "g2"])
    cert = _load(pair.cert)
    assert _names(cert, NameOID.COMMON_NAME) == ["bob"]
    assert _names(cert, NameOID.ORGANIZATION_NAME) == ["g1", "g2"]
    cert.verify_directly_issued_by(_load(pki.ca.cert))


def test_kubeconfig_embeds_credentials():
    cfg = kubeconfig_dict("https://127.0.0.1:1", b"CA", {"token": "t"}, namespace="ns")
    assert cfg["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="
    assert cfg["contexts"][0]["context"]["namespace"] == "ns"
    assert cfg["current-context"] == cfg["contexts"][0]["name"]
