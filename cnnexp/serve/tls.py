"""HTTPS: `tls_cert=` (and `tls_key=`) for uvicorn, which does the TLS. The files are checked before anything
starts, so that a missing or unreadable file, a file that is not a certificate, or a key that does not match
the certificate is one line, not a traceback from inside uvicorn (or a passphrase prompt)."""

import os
import ssl
from pathlib import Path

from cnnexp.utils.errors import UserError


def tls_settings(cfg) -> dict:
    """uvicorn's ssl_certfile and ssl_keyfile (empty without tls_cert=), once they load together."""
    if cfg.tls_cert is None:
        return {}
    cert = readable("tls_cert", cfg.tls_cert, "the certificate's PEM file")
    key = readable("tls_key", cfg.tls_key, "the private key's PEM file") if cfg.tls_key is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        raise UserError(f"tls_cert={cfg.tls_cert} holds no PEM certificate ({reason(exc)}); give the certificate "
                        "file (it begins with -----BEGIN CERTIFICATE-----)") from exc
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise UserError(f"tls_key={cfg.tls_key} does not match tls_cert={cfg.tls_cert}; give the private key "
                            "the certificate was made for") from exc
        if key is None:
            raise UserError(f"tls_cert={cfg.tls_cert} holds no private key; give the certificate's key as "
                            "tls_key=key.pem") from exc
        raise UserError(f"tls_key={cfg.tls_key} is not an unencrypted PEM private key; give the certificate's key "
                        "(decrypt an encrypted one first: openssl pkey -in key.pem -out plain.pem)") from exc
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def readable(name: str, value: str, what: str) -> str:
    path = Path(str(value)).expanduser()
    try:
        path.open("rb").close()
    except OSError as exc:
        raise UserError(f"{name}={value} cannot be read ({os.strerror(exc.errno) if exc.errno else exc}); give "
                        f"{what}") from exc
    return str(path)


def no_passphrase() -> bytes:
    """An encrypted key is refused (uvicorn would stop and ask for its passphrase on the terminal)."""
    return b""


def reason(exc: ssl.SSLError) -> str:
    return (exc.reason or exc.strerror or str(exc)).lower().replace("_", " ")
