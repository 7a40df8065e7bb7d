"""Sign-in throttling of the page: failed attempts counted per (client, user name) and per client.

Counting per user name alone lets anyone lock the duty officer out by typing wrong passwords for
their name.  Here a client that fails too often is refused (whatever the name), and a name is
refused only *to the client that failed with it*: a correct sign-in from another client is never
held up by someone else's failures.  The client is the peer address, an IPv6 address taken as its
/64 (one host commonly holds a whole /64), and ``X-Forwarded-For`` only when the peer is a
configured trusted proxy.

Both tables are bounded: entries expire with the window, and over ``max_tracked`` the least
recently seen are forgotten.  Forgetting can only let an attempt through early, never refuse one.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Failed sign-ins of one user name from one client within the window that refuse that pair.
MAX_FAILED_PER_NAME = 5
#: Failed sign-ins from one client, whatever the names, within the window that refuse the client.
MAX_FAILED_PER_CLIENT = 20
WINDOW_S = 300.0
#: Entries kept per table; a flood of names or addresses evicts the oldest failures.
MAX_TRACKED = 10_000
#: Longer user names cannot exist (accounts' names are short); keys keep this much of them.
NAME_KEY_CHARS = 64
IPV6_CLIENT_PREFIX = 64
UNKNOWN_CLIENT = "unknown"


class _Failures:
    """Failure times per key, the most recently seen key last in the table: expiry pops from the
    front, and so does eviction over ``max_keys``."""

    def __init__(self, limit: int, window_s: float, max_keys: int) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._times: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def _expire(self, now: float) -> None:
        while self._times:
            key, times = next(iter(self._times.items()))
            if now - times[-1] < self.window_s:
                break
            del self._times[key]

    def reached(self, key: Hashable, now: float) -> bool:
        self._expire(now)
        times = self._times.get(key, ())
        return sum(1 for t in times if now - t < self.window_s) >= self.limit

    def add(self, key: Hashable, now: float) -> None:
        self._expire(now)
        times = self._times.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._times[key] = times
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        self._times.pop(key, None)

    def touch(self, key: Hashable) -> None:
        """Keep ``key`` as the most recently seen, last to be evicted."""
        if key in self._times:
            self._times.move_to_end(key)

    def take_one(self, key: Hashable) -> None:
        """Forget the newest failure of ``key``."""
        times = self._times.get(key)
        if times:
            times.pop()
        if not times:
            self._times.pop(key, None)


class SignInThrottle:
    """Whether a client may try to sign in as a name now; told of every success.

    ``clock`` gives seconds (monotonic); the page calls it from its event loop only.
    """

    def __init__(self, *, per_name: int = MAX_FAILED_PER_NAME,
                 per_client: int = MAX_FAILED_PER_CLIENT, window_s: float = WINDOW_S,
                 max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pairs = _Failures(per_name, window_s, max_tracked)
        self._clients = _Failures(per_client, window_s, max_tracked)
        self._clock = clock

    def __len__(self) -> int:
        """Entries held in both tables (bounded by twice ``max_tracked``)."""
        return len(self._pairs) + len(self._clients)

    def attempt(self, client: str, name: str) -> bool:
        """False while ``client`` may not try ``name`` (too many failures of the pair, or of the
        client with any names); else True, and the attempt counts as failed until
        :meth:`succeeded` says otherwise.  Counting before the password is checked (a slow,
        awaited hash) keeps parallel guesses from overtaking the limits."""
        now = self._clock()
        pair = (client, name[:NAME_KEY_CHARS])
        by_client = self._clients.reached(client, now)
        by_pair = self._pairs.reached(pair, now)
        if by_client or by_pair:  # kept as recently seen, so a flood does not evict it
            self._clients.touch(client)
            self._pairs.touch(pair)
            return False
        self._clients.add(client, now)
        self._pairs.add(pair, now)
        return True

    def succeeded(self, client: str, name: str) -> None:
        """The attempt had the right password: it is not counted, and the pair's earlier
        failures are forgotten (the client's other failures still count)."""
        self._pairs.drop((client, name[:NAME_KEY_CHARS]))
        self._clients.take_one(client)


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/24``); ValueError naming a bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
             proxies: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in proxies)


def client_key(peer: str | None, forwarded_for: str | None,
               proxies: tuple[IPNetwork, ...] = ()) -> str:
    """The client a sign-in attempt is counted against.

    ``peer`` is the connection's address; ``forwarded_for`` the ``X-Forwarded-For`` header, read
    only when the peer is one of ``proxies``: the right-most address in it that is not a trusted
    proxy is the client (addresses left of it could be forged by the client itself).  An IPv6
    client is its /64.
    """
    address = _address(peer) if peer else None
    if address is not None and forwarded_for and _trusted(address, proxies):
        for hop in reversed(forwarded_for.split(",")):
            forwarded = _address(hop)
            if forwarded is None:
                break  # a malformed hop: the proxy's own peer is all that is known
            address = forwarded
            if not _trusted(forwarded, proxies):
                break
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)
