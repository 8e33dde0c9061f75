"""Keys and certificates for the local control plane: a CA, the API server's serving
certificate and the service-account signing key. Made with `cryptography`, never downloaded."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: x509.Name,
    *,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    now: dt.datetime,
    days: int = 365,
) -> x509.CertificateBuilder:
    """What every certificate here starts as: `subject`'s, for `key`, issued by `issuer`, valid
    from five minutes before `now` (a skewed clock still accepts it) for `days`."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _named_addresses(cert: Path) -> set[object]:
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.IPAddress))


def write_pki(directory: Path, *, addresses: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write ca.crt, apiserver.crt/.key and sa.key/sa.pub; reuse them when present and naming
    the same addresses (a cluster with a real node listens on another one). The serving
    certificate names localhost, 127.0.0.1, the in-cluster names and `addresses` (the API
    server's own address and the `kubernetes` Service's ClusterIP, for pods of a real node)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        name: directory / name
        for name in (
            "ca.crt",
            "apiserver.crt",
            "apiserver.key",
            "sa.key",
            "sa.pub",
            "kubelet-client.crt",
            "kubelet-client.key",
        )
    }
    wanted = {ipaddress.ip_address(a) for a in ("127.0.0.1", *addresses)}
    if all(p.exists() for p in paths.values()) and wanted <= _named_addresses(
        paths["apiserver.crt"]
    ):
        return paths
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiconn-local-ca")])
    ca = (
        _certificate(ca_name, issuer=ca_name, key=ca_key, now=now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = (
        _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            issuer=ca_name,
            key=server_key,
            now=now,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes"),
                    *(
                        x509.IPAddress(ipaddress.ip_address(a))
                        for a in dict.fromkeys(("127.0.0.1", *addresses))
                    ),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # What kube-apiserver presents to a kubelet (logs, exec, port-forward): an admin identity.
    client_key = _key()
    kubelet_client = _certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
            ]
        ),
        issuer=ca_name,
        key=client_key,
        now=now,
    ).sign(ca_key, hashes.SHA256())
    paths["kubelet-client.crt"].write_bytes(kubelet_client.public_bytes(serialization.Encoding.PEM))
    paths["kubelet-client.key"].write_bytes(_pem_key(client_key))
    sa_key = _key()
    paths["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["apiserver.crt"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["apiserver.key"].write_bytes(_pem_key(server_key))
    paths["sa.key"].write_bytes(_pem_key(sa_key))
    paths["sa.pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for name in ("apiserver.key", "sa.key", "kubelet-client.key"):
        paths[name].chmod(0o600)
    return paths


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of a certificate's public key: what Chromium's
    `--ignore-certificate-errors-spki-list` pins."""
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def write_serving_tls(
    directory: Path,
    *,
    common_name: str,
    dns_names: tuple[str, ...] = ("localhost",),
    addresses: tuple[str, ...] = ("127.0.0.1",),
) -> dict[str, Path]:
    """Write a fresh CA (ca.crt) and a serving certificate it signed (tls.crt, tls.key) for
    `dns_names` and `addresses`: the file names of a cert-manager Secret, so a process started
    here reads the same paths as the pod that mounts one. A new CA every call: whoever trusts
    the previous one does not trust this one."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ca = (
        _certificate(ca_name, issuer=ca_name, key=ca_key, now=now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = (
        _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
            issuer=ca_name,
            key=server_key,
            now=now,
            days=90,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(n) for n in dns_names),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: directory / name for name in ("ca.crt", "tls.crt", "tls.key")}
    paths["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # The chain, as cert-manager writes it: a client that pins the CA's key (Chromium's
    # --ignore-certificate-errors-spki-list) finds it in what the server presents.
    paths["tls.crt"].write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    paths["tls.key"].write_bytes(_pem_key(server_key))
    paths["tls.key"].chmod(0o600)
    return paths
