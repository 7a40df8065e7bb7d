"""Sign-in throttling: per (client, name) and per client, bounded, expiring; the client address
from the peer, or from X-Forwarded-For behind a trusted proxy only."""

from __future__ import annotations

import pytest

from station.throttle import (
    MAX_FAILED_PER_CLIENT,
    MAX_FAILED_PER_NAME,
    WINDOW_S,
    SignInThrottle,
    client_key,
    parse_networks,
)


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_of_one_client_never_refuse_another() -> None:
    throttle = SignInThrottle(clock=Clock())
    assert all(throttle.attempt("10.0.0.66", "duty") for _ in range(MAX_FAILED_PER_NAME))
    assert not throttle.attempt("10.0.0.66", "duty")
    assert throttle.attempt("10.0.0.7", "duty")  # the duty officer's own terminal
    assert throttle.attempt("10.0.0.66", "chief")  # another name, for now


def test_one_client_cannot_try_many_names() -> None:
    throttle = SignInThrottle(clock=Clock())
    assert all(throttle.attempt("10.0.0.66", f"name{n}") for n in range(MAX_FAILED_PER_CLIENT))
    assert not throttle.attempt("10.0.0.66", "a-name-never-tried")
    assert throttle.attempt("10.0.0.7", "name1")


def test_failures_expire_after_the_window_and_a_success_is_not_counted() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock)
    assert all(throttle.attempt("10.0.0.66", "duty") for _ in range(MAX_FAILED_PER_NAME))
    clock.now += WINDOW_S - 1
    assert not throttle.attempt("10.0.0.66", "duty")
    clock.now += 1
    assert len(throttle) == 2  # the attempt just refused was not counted
    assert throttle.attempt("10.0.0.66", "duty")
    throttle.succeeded("10.0.0.66", "duty")
    assert len(throttle) == 0  # expired entries are gone, not only ignored; the success too
    for _ in range(MAX_FAILED_PER_NAME - 1):
        assert throttle.attempt("10.0.0.7", "duty")
    throttle.succeeded("10.0.0.7", "duty")  # the last one had the right password
    assert all(throttle.attempt("10.0.0.7", "duty") for _ in range(MAX_FAILED_PER_NAME))


def test_the_tables_stay_bounded_under_100k_names_and_addresses() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock, max_tracked=1000)
    let_through = 0
    for n in range(100_000):
        throttle.attempt(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", f"user{n}")
        # one client guessing with long distinct names while the flood goes on
        let_through += throttle.attempt("10.255.0.1", f"guess{n}" * 50)
        clock.now += 0.001
    assert len(throttle) <= 2000
    assert let_through == MAX_FAILED_PER_CLIENT  # the flood did not make it forget that client
    assert throttle.attempt("192.168.1.5", "duty")


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "client"), [
    ("192.168.1.5", None, (), "192.168.1.5"),
    # without a trusted proxy the header is the client's own say: ignored
    ("192.168.1.5", "10.9.9.9", (), "192.168.1.5"),
    ("192.168.1.5", "10.9.9.9", ("10.0.0.1",), "192.168.1.5"),
    # behind a trusted proxy: the right-most hop that is not a trusted proxy
    ("10.0.0.1", "203.0.113.9", ("10.0.0.1",), "203.0.113.9"),
    ("10.0.0.1", "1.2.3.4, 203.0.113.9, 10.0.0.2", ("10.0.0.0/24",), "203.0.113.9"),
    ("10.0.0.1", "forged, 203.0.113.9", ("10.0.0.1",), "203.0.113.9"),
    ("10.0.0.1", "not-an-address", ("10.0.0.1",), "10.0.0.1"),
    # an IPv6 host holds its whole /64
    ("2001:db8:1:2:aaaa::1", None, (), "2001:db8:1:2::/64"),
    ("::ffff:192.168.1.5", None, (), "192.168.1.5"),
    (None, "203.0.113.9", (), "unknown"),
])
def test_the_client_of_an_attempt(peer: str | None, forwarded: str | None,
                                  proxies: tuple[str, ...], client: str) -> None:
    assert client_key(peer, forwarded, parse_networks(proxies)) == client


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address or network"):
        parse_networks(["10.0.0.1", "proxy.local"])
