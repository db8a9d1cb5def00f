"""Signed CAP documents, for tests of the intake: a signer's certificate and key, and XML-DSig signing.

    cert, key = cert_and_key()
    raw = sign(document("id"), cert, key)

Used by tests/test_upstream_intake.py and tests/test_upstream_daemon.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def cert_and_key() -> tuple[str, bytes]:
    """A self-signed signer: its certificate (PEM text) and private key (PEM bytes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zx-met test signer")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def sign(xml: str, cert: str, key: bytes) -> bytes:
    """The CAP document with an XML-DSig enveloped signature (signxml), as a signing platform sends it."""
    from lxml import etree
    from signxml import XMLSigner

    root = etree.fromstring(xml.encode())
    signed = XMLSigner().sign(root, key=key, cert=cert)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
