"""Unit tests for lakehouse.api.auth: minting and verifying RS256 tokens, with the local key
pair, a configured public key and an identity provider's JWKS (served on loopback)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lakehouse.api.auth import (
    LEEWAY_S,
    SCOPE_READ,
    SCOPE_WRITE,
    KeysUnavailable,
    Principal,
    TokenError,
    TokenVerifier,
    local_signing_key,
    mint_token,
    public_key_of,
    signing_key_file,
)
from lakehouse.config import Config, load_config


def now() -> int:
    # PyJWT checks lifetimes against the real clock, so tokens are minted relative to it.
    return int(time.time())


@pytest.fixture()
def config(tmp_path: Path) -> Config:
    return load_config("local", environ={"LAKEHOUSE_STATE_DIR": str(tmp_path)})


def new_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def token_for(config: Config, private_pem: bytes, **overrides: object) -> str:
    args: dict = {
        "subject": "alice",
        "scopes": (SCOPE_READ,),
        "now_s": now(),
        "ttl_s": 600,
        "issuer": config.api.issuer,
        "audience": config.api.audience,
    }
    args.update(overrides)
    return mint_token(private_pem, **args)


def test_the_local_key_is_generated_once_and_private(config: Config) -> None:
    first = local_signing_key(config)
    assert local_signing_key(config) == first
    path = signing_key_file(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_local_token_verifies_to_its_subject_and_scopes(config: Config) -> None:
    token = token_for(
        config, local_signing_key(config), scopes=(SCOPE_READ, SCOPE_WRITE), now_s=now()
    )
    assert TokenVerifier(config).verify(token) == Principal(
        "alice", frozenset({SCOPE_READ, SCOPE_WRITE})
    )


@pytest.mark.parametrize(
    ("held", "may_read", "may_write"),
    [
        ({SCOPE_READ}, True, False),
        ({SCOPE_WRITE}, True, True),  # a writer reads what it writes
        ({"plans:admin", "openid"}, False, False),
        (set(), False, False),
    ],
)
def test_scopes_grant(held: set[str], may_read: bool, may_write: bool) -> None:
    principal = Principal("bob", frozenset(held))
    assert (principal.may(SCOPE_READ), principal.may(SCOPE_WRITE)) == (may_read, may_write)


@pytest.mark.parametrize("scopes", [(), ("plans:admin",), (SCOPE_READ, "root")])
def test_only_known_scopes_are_minted(config: Config, scopes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="scopes must be among plans:read, plans:write"):
        token_for(config, local_signing_key(config), scopes=scopes)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256(claims: dict, secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256 by hand (PyJWT refuses a PEM as an HMAC secret)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    assert token not in str(caught.value)  # a refusal never echoes the credential
    return str(caught.value).lower()


def test_tokens_are_refused_for_what_is_wrong_with_them(config: Config) -> None:
    key = local_signing_key(config)
    verifier = TokenVerifier(config)
    start = now()
    assert "expired" in refusal(verifier, token_for(config, key, now_s=start - 700))
    assert "not yet valid" in refusal(verifier, token_for(config, key, now_s=start + LEEWAY_S + 60))
    assert "audience" in refusal(verifier, token_for(config, key, audience="other"))
    assert "issuer" in refusal(verifier, token_for(config, key, issuer="evil"))
    assert "signature verification failed" in refusal(verifier, token_for(config, new_key()))
    claims = {
        "sub": "x",
        "scope": SCOPE_WRITE,
        "iss": config.api.issuer,
        "aud": config.api.audience,
        "exp": start + 60,
    }
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert "alg value is not allowed" in refusal(verifier, unsigned)
    # HS256 keyed with the (public) verification key: the classic confusion attack.
    assert "alg value is not allowed" in refusal(verifier, hs256(claims, public_key_of(key)))
    no_subject = {k: v for k, v in claims.items() if k != "sub"}
    assert '"sub"' in refusal(verifier, jwt.encode(no_subject, key, algorithm="RS256"))
    assert "scope claim" in refusal(
        verifier, jwt.encode({**claims, "scope": ["plans:write"]}, key, algorithm="RS256")
    )
    assert "invalid token" in refusal(verifier, "not.a.token")


def test_a_configured_public_key_is_used_instead_of_the_local_pair(
    config: Config, tmp_path: Path
) -> None:
    provider_key = new_key()
    public_file = tmp_path / "provider.pem"
    public_file.write_bytes(public_key_of(provider_key))
    configured = replace(config, api=replace(config.api, public_key_file=str(public_file)))
    verifier = TokenVerifier(configured)
    assert not signing_key_file(config).exists()  # no local key pair where a key is given
    assert verifier.verify(token_for(config, provider_key)).subject == "alice"
    assert "signature verification failed" in refusal(
        verifier, token_for(config, local_signing_key(config))
    )


@pytest.fixture()
def jwks_server() -> Iterator[tuple[str, bytes]]:
    """An identity provider's JWKS endpoint on loopback, holding one key with kid `k1`."""
    private_pem = new_key()
    public = serialization.load_pem_public_key(public_key_of(private_pem))
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json", private_pem
    finally:
        server.shutdown()
        server.server_close()


def provider_token(config: Config, private_pem: bytes, kid: str) -> str:
    claims = {
        "sub": "svc",
        "scope": SCOPE_WRITE,
        "iss": config.api.issuer,
        "aud": config.api.audience,
        "iat": now(),
        "exp": now() + 60,
    }
    return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})


def test_tokens_of_an_identity_provider_verify_against_its_jwks(
    config: Config, jwks_server: tuple[str, bytes]
) -> None:
    url, private_pem = jwks_server
    configured = replace(config, api=replace(config.api, jwks_url=url))
    verifier = TokenVerifier(configured)
    assert verifier.verify(provider_token(config, private_pem, "k1")) == Principal(
        "svc", frozenset({SCOPE_WRITE})
    )
    assert "no key to verify" in refusal(verifier, provider_token(config, private_pem, "k9"))
    assert not signing_key_file(config).exists()  # no local key pair where a provider is set


def test_an_unreachable_identity_provider_is_an_outage_not_a_bad_token(config: Config) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    verifier = TokenVerifier(replace(config, api=replace(config.api, jwks_url=url)))
    with pytest.raises(KeysUnavailable, match="unreachable"):
        verifier.verify(provider_token(config, new_key(), "k1"))
