"""Token checks on requests built as the ASGI server hands them over."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.requests import Request

from bridge import cli
from bridge.config import ConfigError, load_settings
from bridge.http.auth import Access, AuthError, Authorizer, build_authorizer

SECRET = b"a-test-secret-of-at-least-thirty-two-bytes"


def request(headers: dict[str, str] | None = None, query: str = "") -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/sse/x", "headers": raw, "query_string": query.encode()})


def bearer(token: str) -> Request:
    return request({"Authorization": f"Bearer {token}"})


def claims(**overrides: Any) -> dict[str, Any]:
    return {"topics": ["orders", "metrics.*"], "exp": int(time.time()) + 600, **overrides}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def authorizer(tmp_path: Path, **settings: str) -> Authorizer:
    return build_authorizer(load_settings(settings))


@pytest.fixture
def hs(tmp_path: Path) -> Authorizer:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    return authorizer(tmp_path, jwt_secret_file=str(tmp_path / "secret"), jwt_leeway="0")


@pytest.fixture
def rs(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Authorizer:
    (tmp_path / "keys.pem").write_bytes(pem(rsa_key) + pem(ec_key))
    return authorizer(tmp_path, jwt_public_key_file=str(tmp_path / "keys.pem"), jwt_leeway="0")


def refusal(auth: Authorizer, req: Request, topics: list[str] | None = None) -> AuthError:
    with pytest.raises(AuthError) as raised:
        auth.authorize(req, topics or ["orders"])
    return raised.value


def test_auth_is_off_without_a_key() -> None:
    assert build_authorizer(load_settings({})).authorize(request(), ["anything"]) == Access(expires_at=None)


def test_a_good_token_grants_its_topics_and_patterns_from_each_place(hs: Authorizer) -> None:
    exp = int(time.time()) + 600
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    for req in (bearer(token), request({"Cookie": f"access_token={token}"}), request(query=f"access_token={token}")):
        assert hs.authorize(req, ["orders", "metrics.cpu"]).expires_at == exp


def test_the_header_wins_over_cookie_and_query(hs: Authorizer) -> None:
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    req = request({"Authorization": "Bearer not-a-token", "Cookie": f"access_token={good}"}, f"access_token={good}")
    assert refusal(hs, req).status == 401


def test_a_missing_token_is_a_401_with_a_bare_challenge(hs: Authorizer) -> None:
    error = refusal(hs, request())
    assert (error.status, error.error) == (401, "missing_token")
    assert error.challenge == 'Bearer realm="kafka-sse-bridge"'


def test_a_token_for_other_topics_is_a_403(hs: Authorizer) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    error = refusal(hs, bearer(token), ["orders", "payments"])
    assert (error.status, error.error) == (403, "forbidden_topic")
    assert 'error="insufficient_scope"' in error.challenge
    assert refusal(hs, bearer(jwt.encode(claims(topics="orders other"), SECRET)), ["metrics.cpu"]).status == 403
    assert refusal(hs, bearer(jwt.encode({"exp": int(time.time()) + 60}, SECRET)), ["orders"]).status == 403


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # times are made when the test runs, not when it is collected
        (lambda: claims(exp=int(time.time()) - 5), "the token has expired"),
        (lambda: claims(nbf=int(time.time()) + 300), "the token is not valid yet"),
        (lambda: claims(aud="someone-else"), "the token is not meant for this audience"),
        (lambda: {"topics": ["orders"]}, "the token lacks a required claim"),
        (lambda: claims(topics={"orders": True}), "the token's 'topics' claim is not a list of topic names"),
    ],
)
def test_refused_tokens_are_a_401_saying_why(
    hs: Authorizer, payload: Callable[[], dict[str, Any]], message: str
) -> None:
    token = jwt.encode(payload(), SECRET, algorithm="HS256")
    error = refusal(hs, bearer(token))
    assert (error.status, error.error, error.message) == (401, "invalid_token", message)
    assert error.challenge.startswith('Bearer realm="kafka-sse-bridge", error="invalid_token"')
    assert token not in error.challenge


def test_audience_issuer_and_leeway_when_configured(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    auth = authorizer(tmp_path, jwt_secret_file=str(tmp_path / "secret"), jwt_audience="bridge", jwt_issuer="idp",
                      jwt_leeway="60")  # fmt: skip
    good = claims(aud="bridge", iss="idp", exp=int(time.time()) - 30)  # expired, but within the leeway
    assert auth.authorize(bearer(jwt.encode(good, SECRET)), ["orders"]).expires_at == good["exp"] + 60
    assert refusal(auth, bearer(jwt.encode({**good, "iss": "other"}, SECRET))).message.startswith("the token's issuer")
    assert refusal(auth, bearer(jwt.encode({**good, "aud": "other"}, SECRET))).message.endswith("audience")
    assert refusal(auth, bearer(jwt.encode(claims(iss="idp"), SECRET))).message == "the token lacks a required claim"


def test_a_wrong_signature_is_refused(hs: Authorizer) -> None:
    token = jwt.encode(claims(), b"another-secret-also-thirty-two-bytes-long", algorithm="HS256")
    assert refusal(hs, bearer(token)).message == "the token's signature does not verify"
    assert refusal(hs, bearer("not.a.jwt")).message == "the token is malformed"


def segment(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("algorithm", ["none", "None", ["HS256"], None])
def test_alg_none_and_odd_algs_are_refused(hs: Authorizer, rs: Authorizer, algorithm: object) -> None:
    token = f"{segment({'alg': algorithm, 'typ': 'JWT'})}.{segment(claims())}."
    for auth in (hs, rs):
        assert refusal(auth, bearer(token)).message == "the token's algorithm or key is not accepted"


def test_an_hmac_token_signed_with_the_public_key_is_refused(rs: Authorizer, rsa_key: rsa.RSAPrivateKey) -> None:
    # The classic confusion: the public key, which anyone may have, used as an HS256 secret.
    signed = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims())}"
    signature = hmac.new(pem(rsa_key), signed.encode(), hashlib.sha256).digest()
    assert (
        refusal(rs, bearer(f"{signed}.{segment(signature)}")).message == "the token's algorithm or key is not accepted"
    )


def test_an_rs256_token_is_refused_by_a_secret(hs: Authorizer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert refusal(hs, bearer(token)).message == "the token's algorithm or key is not accepted"


def test_public_keys_verify_rs256_and_es256(
    rs: Authorizer, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    for key, algorithm in ((rsa_key, "RS256"), (ec_key, "ES256")):
        assert rs.authorize(bearer(jwt.encode(claims(), key, algorithm=algorithm)), ["orders"]).expires_at
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refusal(rs, bearer(jwt.encode(claims(), other, algorithm="RS256"))).message.endswith("does not verify")
    assert refusal(rs, bearer(jwt.encode(claims(), rsa_key, algorithm="RS512"))).status == 401  # not allowed


def test_a_jwks_file_picks_the_key_by_kid(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    keys = [
        {**orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r1", "alg": "RS256"},
        {**orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e1"},
    ]
    (tmp_path / "jwks.json").write_bytes(orjson.dumps({"keys": keys}))
    auth = authorizer(tmp_path, jwt_jwks_file=str(tmp_path / "jwks.json"))
    assert auth.authorize(bearer(jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "r1"})), ["orders"])
    assert auth.authorize(bearer(jwt.encode(claims(), ec_key, "ES256", headers={"kid": "e1"})), ["orders"])
    # a kid names one key: the right signature under another kid, or an unknown kid, is refused
    assert refusal(auth, bearer(jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "e1"}))).status == 401
    assert refusal(auth, bearer(jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "r9"}))).status == 401


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({"jwt_secret_file": b"short"}, {}, "--jwt-secret-file: the secret must be at least 32 bytes"),
        ({"jwt_secret_file": b"RSA"}, {}, "--jwt-secret-file: holds a PEM key"),
        ({"jwt_secret_file": SECRET}, {"jwt_algorithms": "RS256"}, "--jwt-algorithms: a secret only verifies"),
        ({"jwt_public_key_file": b"RSA"}, {"jwt_algorithms": "HS256"}, "--jwt-algorithms: public keys never verify"),
        ({"jwt_public_key_file": b"RSA"}, {"jwt_algorithms": "none"}, "--jwt-algorithms: not supported: none"),
        ({"jwt_public_key_file": b"not a key"}, {}, "--jwt-public-key-file '"),
        ({"jwt_jwks_file": b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'}, {}, "--jwt-jwks-file '"),
        ({"jwt_jwks_file": b"[]"}, {}, "--jwt-jwks-file '"),
        ({"jwt_secret_file": SECRET, "jwt_jwks_file": b"{}"}, {}, "token keys: give only one of"),
    ],
)
def test_bad_key_settings_stop_start_up_in_one_line(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, files: dict[str, bytes], extra: dict[str, str], message: str
) -> None:
    settings = dict(extra)
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(pem(rsa_key) if content == b"RSA" else content)
        settings[name] = str(path)
    with pytest.raises(ConfigError) as error:
        build_authorizer(load_settings(settings))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert SECRET.decode() not in str(error.value)


def test_an_unreadable_key_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--jwt-secret-file: cannot read '.*missing': No such file"):
        build_authorizer(load_settings({"jwt_secret_file": str(tmp_path / "missing")}))


def test_the_token_command_mints_what_the_bridge_accepts(
    tmp_path: Path, hs: Authorizer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["token", "--secret-file", str(tmp_path / "secret"), "--topics", "orders, metrics.*",
                     "--ttl", "120"]) == 0  # fmt: skip
    token = capsys.readouterr().out.strip()
    access = hs.authorize(bearer(token), ["orders", "metrics.cpu"])
    assert access.expires_at is not None
    assert 110 < access.expires_at - time.time() <= 120
    assert refusal(hs, bearer(token), ["payments"]).status == 403


def test_the_console_script_stops_at_a_bad_key_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("too-short")
    result = subprocess.run(["kafka-sse-bridge", "serve", "--jwt-secret-file", str(tmp_path / "secret")],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "kafka-sse-bridge: --jwt-secret-file: the secret must be at least 32 bytes\n"
    assert "too-short" not in result.stderr + result.stdout


def test_the_challenge_never_carries_the_clients_text(hs: Authorizer) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    error = refusal(hs, bearer(token), ['x"\r\nSet-Cookie: a=b'])
    assert error.status == 403
    assert error.challenge == ('Bearer realm="kafka-sse-bridge", error="insufficient_scope", '
                               'error_description="the token does not grant this topic"')  # fmt: skip


def test_the_challenge_stays_a_quoted_string(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    auth = authorizer(tmp_path, jwt_secret_file=str(tmp_path / "secret"), jwt_topics_claim='to"pics\\')
    error = refusal(auth, bearer(jwt.encode(claims(**{'to"pics\\': 5}), SECRET)))
    assert error.message == "the token's 'to\"pics\\\\' claim is not a list of topic names"
    assert error.challenge.endswith("error_description=\"the token's 'topics' claim is not a list of topic names\"")
