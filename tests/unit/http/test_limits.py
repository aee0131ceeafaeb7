from __future__ import annotations

from ipaddress import ip_network

import pytest

from bridge.http.limits import ConnectionLimits, Refusal, client_address

PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("203.0.113.5", [b"198.51.100.1"], "203.0.113.5"),  # an untrusted peer's header is ignored
        ("10.0.0.2", [b"198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", [b"6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # what the client wrote itself is left of it
        ("10.0.0.2", [b"198.51.100.1, 10.0.0.9"], "198.51.100.1"),  # through two trusted proxies
        ("10.0.0.2", [b"6.6.6.6", b"198.51.100.1,10.1.1.1"], "198.51.100.1"),  # several headers are one list
        ("10.0.0.2", [b"garbage, 10.0.0.3"], "garbage"),  # not an address: not a proxy of ours either
        ("10.0.0.2", [b"10.0.0.3, 10.0.0.4"], "10.0.0.3"),  # only proxies: the left-most
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", [b" , "], "10.0.0.2"),
        ("fd00::1", [b"2001:db8::7"], "2001:db8::7"),
        ("", [b"198.51.100.1"], ""),  # no peer address (a unix socket): never trusted
    ],
)
def test_client_address(peer: str, headers: list[bytes], client: str) -> None:
    assert client_address(peer, headers, PROXIES) == client


def test_limits_per_address_then_per_process_and_release() -> None:
    limits = ConnectionLimits(max_connections=3, max_per_address=2)
    assert limits.admit("a") is None
    assert limits.admit("a") is None
    assert limits.admit("a") is Refusal.TOO_MANY_CONNECTIONS
    assert limits.admit("b") is None
    assert limits.admit("c") is Refusal.SERVER_FULL
    limits.release("a")
    assert limits.admit("c") is None
    for address in ("a", "b", "c"):
        limits.release(address)
    assert (limits.open, limits.by_address) == (0, {})
    assert limits.refused == {Refusal.TOO_MANY_CONNECTIONS: 1, Refusal.SERVER_FULL: 1, Refusal.SHUTTING_DOWN: 0}


def test_nothing_is_admitted_while_draining() -> None:
    limits = ConnectionLimits(max_connections=3, max_per_address=2)
    limits.draining = True
    assert limits.admit("a") is Refusal.SHUTTING_DOWN
    assert limits.open == 0
