"""State shared by many processes through Redis: the response cache's store and rate-limit buckets.

Selected by configuration, never by default: ``CacheConfig(path="redis://host:6379/0")`` keeps the
cache's persistent level in Redis instead of an SQLite file; ``RateLimit(..., shared="redis://...")``
keeps that limit's buckets there, so every process naming the same server and ``key_prefix`` draws
on one quota. Needs the ``redis`` extra (``pip install 'promptlift[redis]'``); imported lazily.

Keys, under the prefix (default ``promptlift:``)::

    {prefix}cache:{namespace}:{key}      the cache entry: the same JSON as the SQLite file's value,
                                         expiring natively (SET PX) when the cache has a ttl_s
    {prefix}flight:{namespace}:{key}     a claim on a call in flight: the process holding it sends
                                         the request, the others wait for its answer in the cache
                                         entry (a lease, renewed while the call runs)
    {prefix}ratelimit:{scope}:{rpm|tpm}  a token bucket: a hash (level, updated, rate, paused),
                                         changed only by one Lua script, so each take is atomic

Bucket arithmetic is ``ratelimit.TokenBucket``'s, done inside Redis on Redis's own clock (``TIME``),
so processes on machines whose clocks disagree still share one bucket correctly. A bucket left
alone until it would be full again expires: a missing bucket is a full one.

Failure: every redis-py error (refused, reset, timed out, a server that went away) becomes one typed
``SharedStateUnavailable`` here, at this boundary; callers never see a redis exception. What each
caller does with it is its own contract: the cache degrades to memory, a shared limit fails closed
unless told to degrade (``ratelimit``). A Redis URL's password never reaches a message or a log.

Thread-safety: a ``RedisLink`` holds redis-py's connection pool, safe from any thread; each command
is sent inline (one loopback round trip is ~0.1 ms, cheaper than a thread hop), with a short socket
timeout so an unreachable server costs a second at most, not a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from promptlift.errors import ConfigError, SharedStateUnavailable
from promptlift.log import get_logger

if TYPE_CHECKING:
    import redis

log = get_logger("shared")

T = TypeVar("T")

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "promptlift:"
# Seconds to connect and to wait for an answer: a loopback or LAN Redis answers in well under 1 ms.
SOCKET_TIMEOUT_S = 1.0


def is_redis_url(value: object) -> bool:
    """True for ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs."""
    return isinstance(value, str) and urlsplit(value).scheme in SCHEMES and "://" in value


def redacted(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """One Redis server, as a connection pool; every redis error mapped to ``SharedStateUnavailable``."""

    def __init__(self, url: str):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(
                f"{redacted(url)}: Redis needs the redis extra: pip install 'promptlift[redis]'"
            ) from None
        self.url = url
        self.where = redacted(url)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            # One quick retry reconnects a pooled socket the server dropped (a Redis restart);
            # redis-py's default backs off for seconds on a server that is simply down.
            self.client: redis.Redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"{self.where} is not a usable Redis URL: {exc}") from None
        self._warned = False
        self._lock = threading.Lock()

    def call(self, step: Callable[[redis.Redis], T]) -> T:
        """``step(client)``, or ``SharedStateUnavailable`` (one line, no password) if Redis failed."""
        try:
            return step(self.client)
        except self._errors as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SharedStateUnavailable(f"Redis at {self.where} is unreachable ({reason})") from None

    def warn_once(self, message: str) -> None:
        """Log ``message`` as a WARNING the first time only: one line per lost server, not per call."""
        with self._lock:
            if self._warned:
                return
            self._warned = True
        log.warning("%s", message)

    def close(self) -> None:
        self.client.close()


class RedisStore:
    """The cache's persistent level in Redis: the ``SQLiteStore`` interface, the same JSON values.

    ``max_entries`` does not apply: Redis evicts by its own ``maxmemory-policy``. Expiry is
    Redis's (``PX``), so an expired entry is gone for every process at once.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX):
        self.link = RedisLink(url)
        self.path = self.link.where
        self.prefix = f"{prefix}cache:"
        self.flight_prefix = f"{prefix}flight:"  # outside the cache's keys: never counted or cleared
        self._renew = self.link.client.register_script(_RENEW_LUA)
        self._release = self.link.client.register_script(_RELEASE_LUA)

    def _key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}{namespace}:{key}"

    # -- one call in flight across processes: whoever claims the key sends, the others wait -------
    def claim(self, namespace: str, key: str, owner: str, lease_s: float) -> bool:
        """Take the key's flight for ``lease_s`` seconds; False when another process holds it."""
        name = f"{self.flight_prefix}{namespace}:{key}"
        lease_ms = max(1, round(lease_s * 1000))
        return bool(self.link.call(lambda client: client.set(name, owner, nx=True, px=lease_ms)))

    def renew(self, namespace: str, key: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s claim; False when it is no longer ``owner``'s (it expired)."""
        name = f"{self.flight_prefix}{namespace}:{key}"
        args = (owner, max(1, round(lease_s * 1000)))
        return bool(self.link.call(lambda _: self._renew(keys=[name], args=args)))

    def release(self, namespace: str, key: str, owner: str) -> None:
        """Drop ``owner``'s claim (never another process's that took over after it expired)."""
        name = f"{self.flight_prefix}{namespace}:{key}"
        self.link.call(lambda _: self._release(keys=[name], args=(owner,)))

    def peek(self, namespace: str, key: str) -> tuple[str | None, float | None, bool]:
        """One round trip: the entry (value, seconds it has left) and whether a flight holds the key."""

        def read(client: redis.Redis) -> list[Any]:
            with client.pipeline(transaction=False) as pipe:
                pipe.get(self._key(namespace, key))
                pipe.pttl(self._key(namespace, key))
                pipe.exists(f"{self.flight_prefix}{namespace}:{key}")
                return pipe.execute()

        value, ttl_ms, claimed = self.link.call(read)
        ttl = int(ttl_ms) / 1000 if value is not None and int(ttl_ms) > 0 else None
        return (None if value is None else str(value)), ttl, bool(claimed)

    def get(self, namespace: str, key: str, now: float) -> tuple[str, float | None] | None:
        def read(client: redis.Redis) -> list[Any]:
            with client.pipeline(transaction=False) as pipe:
                pipe.get(self._key(namespace, key))
                pipe.pttl(self._key(namespace, key))
                return pipe.execute()

        value, ttl_ms = self.link.call(read)
        if value is None:
            return None
        return str(value), (now + int(ttl_ms) / 1000 if int(ttl_ms) > 0 else None)

    def put(self, namespace: str, key: str, value: str, now: float, expires: float | None) -> None:
        ttl_ms = None if expires is None else max(1, round((expires - now) * 1000))
        self.link.call(lambda client: client.set(self._key(namespace, key), value, px=ttl_ms))

    def _keys(self, client: redis.Redis, namespace: str | None) -> Iterator[str]:
        pattern = f"{self.prefix}{namespace}:*" if namespace is not None else f"{self.prefix}*"
        for name in client.scan_iter(match=pattern, count=1000):
            yield str(name)

    def clear(self, namespace: str | None = None) -> int:
        def drop(client: redis.Redis) -> int:
            names = list(self._keys(client, namespace))
            for start in range(0, len(names), 1000):
                client.unlink(*names[start : start + 1000])
            return len(names)

        return self.link.call(drop)

    def summary(self) -> dict[str, Any]:
        """Entries and JSON bytes per namespace (a SCAN of the prefix: for stats, not the hot path)."""

        def count(client: redis.Redis) -> dict[str, dict[str, int]]:
            namespaces: dict[str, dict[str, int]] = {}
            names = list(self._keys(client, None))
            for start in range(0, len(names), 1000):
                chunk = names[start : start + 1000]
                with client.pipeline(transaction=False) as pipe:
                    for name in chunk:
                        pipe.strlen(name)
                    sizes = pipe.execute()
                for name, size in zip(chunk, sizes, strict=True):
                    ns = name[len(self.prefix) :].rsplit(":", 1)[0]
                    entry = namespaces.setdefault(ns, {"entries": 0, "bytes": 0})
                    entry["entries"] += 1
                    entry["bytes"] += int(size)
            return namespaces

        namespaces = self.link.call(count)
        return {
            "path": self.path,
            "entries": sum(v["entries"] for v in namespaces.values()),
            "bytes": sum(v["bytes"] for v in namespaces.values()),
            "namespaces": namespaces,
        }

    def close(self) -> None:
        self.link.close()


# A claim is changed only by its owner: compare, then act, atomically.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# One bucket, one atomic step: refill on Redis's clock, then the operation, then the expiry.
# KEYS[1] the bucket; ARGV op (take | give | slow | recover), amount, configured rate/s, capacity.
# Returns the wait in seconds as a string (a Lua number would be truncated to an integer reply).
_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op, amount = ARGV[1], tonumber(ARGV[2])
local configured, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'level', 'updated', 'rate', 'paused')
local level = math.min(cap, tonumber(s[1]) or cap)
local updated = tonumber(s[2]) or now
local rate = math.min(configured, tonumber(s[3]) or configured)
local paused = tonumber(s[4]) or 0
local start = math.max(updated, paused)
if now > start then level = math.min(cap, level + (now - start) * rate) end
updated = math.max(updated, now)
local wait = 0
if op == 'take' then
  local short = math.min(amount, cap) - level
  level = level - amount
  wait = math.max(0, paused - now)
  if short > 0 then wait = wait + short / rate end
elseif op == 'give' then
  level = math.min(cap, level + amount)
elseif op == 'slow' then
  rate = math.max(configured / 10, rate / 2)
  if amount > 0 then paused = math.max(paused, now + amount) end
  level = math.min(level, 0)
elseif op == 'recover' then
  rate = math.min(configured, rate + configured * 0.05)
end
local f = '%.17g'
redis.call('HSET', KEYS[1], 'level', string.format(f, level), 'updated', string.format(f, updated),
  'rate', string.format(f, rate), 'paused', string.format(f, paused))
local idle = math.max(0, paused - now) + (cap - level) / rate + 60
redis.call('PEXPIRE', KEYS[1], math.ceil(idle * 1000))
return string.format(f, wait)
"""


class RedisBucket:
    """A ``TokenBucket`` kept in Redis: the same methods, the same arithmetic, one script call each.

    ``take`` raises ``SharedStateUnavailable`` when Redis cannot be reached (the caller decides
    whether to fail closed or degrade); the after-the-fact adjustments (``give_back``,
    ``slow_down``, ``recover``) raise it too, and the limiter swallows them: a call already answered
    is never turned into an error by its bookkeeping.
    """

    def __init__(self, link: RedisLink, key: str, rate_per_s: float, capacity: float):
        if rate_per_s <= 0:
            raise ValueError("a rate limit must be positive")
        self.link = link
        self.key = key
        self.configured_rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self._script = link.client.register_script(_BUCKET_LUA)

    def _run(self, op: str, amount: float) -> float:
        args = (op, repr(float(amount)), repr(self.configured_rate), repr(self.capacity))
        return float(self.link.call(lambda _: self._script(keys=[self.key], args=args)))

    def take(self, amount: float) -> float:
        return self._run("take", amount)

    def give_back(self, amount: float) -> None:
        self._run("give", amount)

    def slow_down(self, retry_after: float | None) -> None:
        self._run("slow", retry_after or 0.0)

    def recover(self) -> None:
        self._run("recover", 0.0)
