"""Who may read what: JWT bearer tokens, checked once per stream before it starts.

Auth is on when a key is configured: an HS256 secret, PEM public keys
(RS256/ES256) or a JWKS file, all read once at start-up; no key is fetched
from the network. The algorithms accepted are an explicit allow-list tied to
the kind of key: a secret never verifies an asymmetric algorithm nor a public
key an HMAC one (algorithm confusion), and ``none`` is never accepted.

A token comes from ``Authorization: Bearer``, else a cookie, else a query
parameter (an EventSource cannot set headers). Its topics claim holds topic
names or glob patterns. A missing or bad token is a 401, a good token for
another topic a 403, both with a ``WWW-Authenticate`` challenge (RFC 6750).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import HTTPConnection

from bridge.config import ConfigError, Settings

REALM = "kafka-sse-bridge"
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
EDDSA_ALGORITHMS = frozenset({"EdDSA"})
PUBLIC_KEY_ALGORITHMS = RSA_ALGORITHMS | EC_ALGORITHMS | EDDSA_ALGORITHMS
# RFC 7518 §3.2: an HMAC key at least as long as the hash.
MIN_SECRET_BYTES = 32
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)

# What a refused token is told: the kind of failure, never the token or a key.
_REFUSALS: Sequence[tuple[type[jwt.PyJWTError], str]] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is not meant for this audience"),
    (jwt.InvalidIssuerError, "the token's issuer is not accepted"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
)


class AuthError(Exception):
    """Refused before the stream starts: 401 (no or bad token) or 403 (not this topic)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    @property
    def challenge(self) -> str:
        if self.error == "missing_token":  # RFC 6750 §3.1: no error code when no token came
            return f'Bearer realm="{REALM}"'
        code = "insufficient_scope" if self.status == 403 else "invalid_token"
        # Only the kind of failure: a message may quote a requested topic, which is the client's text.
        description = "the token does not grant this topic" if self.status == 403 else self.message
        return f'Bearer realm="{REALM}", error="{code}", error_description="{_quotable(description)}"'


@dataclass(frozen=True)
class Access:
    """What a request may do: ``expires_at`` is when its token ends (epoch
    seconds, leeway included), None when auth is off."""

    expires_at: float | None = None


OPEN = Access()


@dataclass(frozen=True)
class _Key:
    key: Any  # a secret (bytes) or a cryptography public key
    algorithms: frozenset[str]


class TokenVerifier:
    def __init__(self, keys: Sequence[_Key], *, by_kid: dict[str, _Key], settings: Settings) -> None:
        self._keys = keys
        self._by_kid = by_kid
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.jwt_leeway
        self._topics_claim = settings.jwt_topics_claim
        self._required = ["exp", *(["aud"] if self._audience else []), *(["iss"] if self._issuer else [])]

    def verify(self, token: str) -> tuple[tuple[str, ...], float]:
        """The token's topic patterns and when it ends; AuthError(401) if it is not good."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("the token is malformed") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if self._by_kid and isinstance(kid, str):
            keys: Sequence[_Key] = [self._by_kid[kid]] if kid in self._by_kid else []
        else:
            keys = self._keys
        candidates = [key for key in keys if isinstance(algorithm, str) and algorithm in key.algorithms]
        if not candidates:
            raise _invalid("the token's algorithm or key is not accepted")
        refusal: jwt.PyJWTError | None = None
        for candidate in candidates:
            try:
                claims = jwt.decode(
                    token, candidate.key, algorithms=sorted(candidate.algorithms), audience=self._audience,
                    issuer=self._issuer, leeway=self._leeway, options={"require": self._required},
                )  # fmt: skip
                break
            except jwt.InvalidSignatureError as error:  # another key of the file may have signed it
                refusal = error
            except jwt.PyJWTError as error:
                raise _invalid(_describe(error)) from None
        else:
            assert refusal is not None
            raise _invalid(_describe(refusal)) from None
        return self._topics(claims), float(claims["exp"]) + self._leeway

    def _topics(self, claims: dict[str, Any]) -> tuple[str, ...]:
        granted = claims.get(self._topics_claim, [])
        if isinstance(granted, str):  # OAuth scope style: space-separated
            granted = granted.split()
        if not isinstance(granted, list) or not all(isinstance(item, str) for item in granted):
            raise _invalid(f"the token's {self._topics_claim!r} claim is not a list of topic names")
        return tuple(granted)


class Authorizer:
    """Finds the token of a request and checks it covers the topics asked for."""

    def __init__(self, verifier: TokenVerifier | None, *, cookie: str, query_param: str) -> None:
        self._verifier = verifier
        self._cookie = cookie
        self._query_param = query_param

    def authorize(self, request: HTTPConnection, topics: Sequence[str]) -> Access:
        """Access to every one of ``topics``, or AuthError."""
        if self._verifier is None:
            return OPEN
        token = self._token(request)
        if token is None:
            raise AuthError(401, "missing_token", "a bearer token is required")
        patterns, expires_at = self._verifier.verify(token)
        for topic in topics:
            if not any(fnmatchcase(topic, pattern) for pattern in patterns):
                raise AuthError(403, "forbidden_topic", f"the token does not grant topic {topic!r}")
        return Access(expires_at)

    def _token(self, request: HTTPConnection) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if self._cookie and (cookie := request.cookies.get(self._cookie)):
            return cookie
        if self._query_param and (query := request.query_params.get(self._query_param)):
            return query
        return None


def _quotable(text: str) -> str:
    """Text that stays inside an HTTP quoted-string (RFC 6750 allows no escapes in error_description)."""
    return "".join(char for char in text if " " <= char <= "~" and char not in '"\\')


def _invalid(message: str) -> AuthError:
    return AuthError(401, "invalid_token", message)


def _describe(error: jwt.PyJWTError) -> str:
    return next((text for kind, text in _REFUSALS if isinstance(error, kind)), "the token is not valid")


def build_authorizer(settings: Settings) -> Authorizer:
    """The settings' authorizer, its keys read now; ConfigError if a key file or setting is wrong."""
    return Authorizer(_build_verifier(settings), cookie=settings.jwt_cookie, query_param=settings.jwt_query_param)


def _build_verifier(settings: Settings) -> TokenVerifier | None:
    given = [(name, path) for name in ("jwt_secret_file", "jwt_public_key_file", "jwt_jwks_file")
             if (path := getattr(settings, name))]  # fmt: skip
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(f"token keys: give only one of {', '.join(_flag(name) for name, _ in given)}")
    name, path = given[0]
    allowed = frozenset(settings.jwt_algorithms)
    if unknown := allowed - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS:
        raise ConfigError(f"{_flag('jwt_algorithms')}: not supported: {', '.join(sorted(unknown))}")
    by_kid: dict[str, _Key] = {}
    if name == "jwt_secret_file":
        if allowed - HMAC_ALGORITHMS:
            raise ConfigError(f"{_flag('jwt_algorithms')}: a secret only verifies {', '.join(sorted(HMAC_ALGORITHMS))}")
        keys = [_Key(read_secret(path), allowed or frozenset({"HS256"}))]
    else:
        allowed = allowed or frozenset({"RS256", "ES256"})
        content = _read(name, path)
        if name == "jwt_public_key_file":
            keys = _pem_keys(path, content, allowed)
        else:
            keys, by_kid = _jwks_keys(path, content, allowed)
    return TokenVerifier(keys, by_kid=by_kid, settings=settings)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{_flag(name)}: cannot read {path!r}: {error.strerror}") from None


def read_secret(path: str) -> bytes:
    """The HMAC secret of ``path``, without the line end an editor adds."""
    secret = _read("jwt_secret_file", path).strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{_flag('jwt_secret_file')}: the secret must be at least {MIN_SECRET_BYTES} bytes")
    if b"-----BEGIN" in secret:  # a PEM key or certificate given as a secret: the confusion to avoid
        raise ConfigError(f"{_flag('jwt_secret_file')}: holds a PEM key; give it as {_flag('jwt_public_key_file')}")
    return secret


def _public_key(key: Any, allowed: frozenset[str], where: str) -> _Key:
    if allowed & HMAC_ALGORITHMS:
        raise ConfigError(f"{_flag('jwt_algorithms')}: public keys never verify {', '.join(sorted(HMAC_ALGORITHMS))}")
    if isinstance(key, rsa.RSAPublicKey):
        family = RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        family = EC_ALGORITHMS
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        family = EDDSA_ALGORITHMS
    else:
        raise ConfigError(f"{where}: not an RSA, EC or EdDSA public key")
    return _Key(key, allowed & family)


def _pem_keys(path: str, content: bytes, allowed: frozenset[str]) -> list[_Key]:
    where = f"{_flag('jwt_public_key_file')} {path!r}"
    blocks = _PEM_BLOCK.findall(content)
    if not blocks:
        raise ConfigError(f"{where}: no PEM public key (-----BEGIN PUBLIC KEY-----) in it")
    try:
        keys = [_public_key(load_pem_public_key(block), allowed, where) for block in blocks]
    except ValueError:
        raise ConfigError(f"{where}: a PEM block is not a valid public key") from None
    _check_usable(keys, allowed, where)
    return keys


def _jwks_keys(path: str, content: bytes, allowed: frozenset[str]) -> tuple[list[_Key], dict[str, _Key]]:
    where = f"{_flag('jwt_jwks_file')} {path!r}"
    try:
        entries = orjson.loads(content)["keys"]
        jwks = [(entry, jwt.PyJWK(entry)) for entry in entries]
    except (jwt.PyJWTError, orjson.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"{where}: not a JWKS document of usable keys") from None
    keys, by_kid = [], {}
    for entry, jwk in jwks:
        if jwk.key_type == "oct":  # a shared secret among public keys is the confusion to avoid
            raise ConfigError(f"{where}: holds a symmetric ('oct') key; use {_flag('jwt_secret_file')} for secrets")
        key = _public_key(jwk.key, allowed, where)
        if "alg" in entry:  # a key bound to one algorithm serves only that one
            key = _Key(key.key, key.algorithms & {entry["alg"]})
        keys.append(key)
        if isinstance(entry.get("kid"), str):
            by_kid[entry["kid"]] = key
    _check_usable(keys, allowed, where)
    return keys, by_kid


def _check_usable(keys: Sequence[_Key], allowed: frozenset[str], where: str) -> None:
    if not any(key.algorithms for key in keys):
        raise ConfigError(f"{where}: no key can verify any of {', '.join(sorted(allowed))}")
