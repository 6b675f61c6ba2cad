"""A budget ledger kept in Redis, so N processes together never cross one budget.

``Budget(shared="redis://...")`` makes the client's ledger (and a ``budget_scope``'s) a
``SharedLedger``: spent and reserved totals live in one Redis hash, ``{key_prefix}budget:{name}``,
and each ``reserve`` (check every cap against spent + reserved by every process, then hold) and
each ``release`` (replace the hold with what the call really spent) is one Lua script, atomic in
Redis. The ledger's own fields mirror the totals Redis returned last, so ``snapshot`` and
``overshoot`` read the shared state without a round trip.

Redis unreachable: ``on_unreachable="fail"`` (default) — ``reserve`` raises
``SharedStateUnavailable`` and the call is not sent; ``"local"`` — one warning, then this process
goes on alone against the caps, from the totals it last saw. A ``release`` that cannot reach Redis
never raises (the answer came): its hold stays counted in Redis, erring on the side of the cap.

A process killed mid-call cannot release its holds, so each ledger also keeps its own holds under
its owner id (``{key}:holds``) with a lease (``{key}:alive``, a sorted set of lease ends on Redis's
clock), renewed by every reserve and release and, while it holds anything, by a heartbeat thread.
Every script first takes back the holds of owners whose lease ran out: a killed process's
reservations return to the budget within ``LEASE_S``. A release subtracts at most what its owner
still holds, so a hold taken back (a process cut off from Redis past its lease) is never subtracted
twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from typing import Any

from promptlift.client.budget import BudgetLedger, Reservation
from promptlift.client.config import Budget
from promptlift.client.shared import RedisLink
from promptlift.errors import BudgetExceeded, SharedStateUnavailable
from promptlift.log import get_logger

log = get_logger("budget")

LEASE_S = 60.0  # a killed process's holds count against the budget this long at most

_FIELDS = ("spent_usd", "spent_tokens", "calls", "reserved_usd", "reserved_tokens", "in_flight", "refused")

# Every script returns {refused_by, the seven totals as strings} (Lua numbers would be truncated).
_STATE = """
local names = {'spent_usd', 'spent_tokens', 'calls', 'reserved_usd', 'reserved_tokens', 'in_flight',
  'refused'}
local function state(refused_by)
  local s = redis.call('HMGET', KEYS[1], unpack(names))
  local out = {refused_by}
  for i = 1, #names do out[i + 1] = s[i] or '0' end
  return out
end
local function num(name) return tonumber(redis.call('HGET', KEYS[1], name) or '0') end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local owner = ARGV[#ARGV - 1]
local function held(o)
  local h = redis.call('HMGET', KEYS[2], o .. ':usd', o .. ':tokens', o .. ':calls')
  return tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
end
local function unhold(o, usd, tokens, calls)
  local hu, ht, hc = held(o)
  usd, tokens, calls = math.min(hu, usd), math.min(ht, tokens), math.min(hc, calls)
  redis.call('HSET', KEYS[1], 'reserved_usd', string.format('%.17g', math.max(0, num('reserved_usd') - usd)))
  if tokens ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved_tokens', -tokens) end
  if calls ~= 0 then redis.call('HINCRBY', KEYS[1], 'in_flight', -calls) end
  redis.call('HSET', KEYS[2], o .. ':usd', string.format('%.17g', hu - usd), o .. ':tokens', ht - tokens,
    o .. ':calls', hc - calls)
  return calls
end
for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  local hu, ht, hc = held(o)
  unhold(o, hu, ht, hc)
  redis.call('HDEL', KEYS[2], o .. ':usd', o .. ':tokens', o .. ':calls')
  redis.call('ZREM', KEYS[3], o)
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[#ARGV]), owner)
"""

# KEYS: totals, holds, leases. ARGV: cost, tokens, calls, max_cost, max_tokens, max_calls ('' for
# no cap), owner, lease seconds
_RESERVE_LUA = (
    _STATE
    + """
local cost, tokens, calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local refused_by = ''
if ARGV[4] ~= '' and num('spent_usd') + num('reserved_usd') + cost > tonumber(ARGV[4]) + 1e-12 then
  refused_by = 'cost_usd'
elseif ARGV[5] ~= '' and num('spent_tokens') + num('reserved_tokens') + tokens > tonumber(ARGV[5]) then
  refused_by = 'tokens'
elseif ARGV[6] ~= '' and num('calls') + num('in_flight') + calls > tonumber(ARGV[6]) then
  refused_by = 'calls'
end
if refused_by ~= '' then
  local before = state(refused_by)
  redis.call('HINCRBY', KEYS[1], 'refused', 1)
  return before
end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved_usd', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', tokens)
redis.call('HINCRBY', KEYS[1], 'in_flight', calls)
redis.call('HINCRBYFLOAT', KEYS[2], owner .. ':usd', ARGV[1])
redis.call('HINCRBY', KEYS[2], owner .. ':tokens', tokens)
redis.call('HINCRBY', KEYS[2], owner .. ':calls', calls)
return state('')
"""
)

# KEYS as above. ARGV: held cost, held tokens, held calls, spent cost, spent tokens, sent (1 or 0),
# owner, lease seconds
_RELEASE_LUA = (
    _STATE
    + """
unhold(owner, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
redis.call('HINCRBYFLOAT', KEYS[1], 'spent_usd', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'spent_tokens', tonumber(ARGV[5]))
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'calls', tonumber(ARGV[3])) end
return state('')
"""
)


# ARGV: owner, lease seconds: the lease renewed (and dead owners' holds taken back), nothing else.
_RENEW_LUA = _STATE + "return state('')"


def _heartbeat(ref: weakref.ref[SharedLedger]) -> None:
    """Renew a ledger's lease every third of it while the ledger lives and holds calls in flight
    (a call may outlast a lease)."""
    while True:
        time.sleep(LEASE_S / 3)  # holding no reference meanwhile
        ledger = ref()
        if ledger is None or not ledger._renew_while_holding():
            return
        del ledger


def _cap(value: float | int | None) -> str:
    return "" if value is None else repr(value)


class SharedLedger(BudgetLedger):
    """A ``BudgetLedger`` whose totals live in Redis; the same methods and messages. Thread-safe."""

    def __init__(self, budget: Budget, name: str = "client"):
        super().__init__(budget, name)
        assert budget.shared is not None
        self.link = RedisLink(budget.shared)
        self.key = f"{budget.key_prefix}budget:{name}"
        self.keys = [self.key, f"{self.key}:holds", f"{self.key}:alive"]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.degraded = False
        self._reserve_script = self.link.client.register_script(_RESERVE_LUA)
        self._release_script = self.link.client.register_script(_RELEASE_LUA)
        self._renew_script = self.link.client.register_script(_RENEW_LUA)
        self._mine = 0  # calls this ledger holds in Redis now: the heartbeat runs while there are any
        self._heart: threading.Thread | None = None

    def _run(self, script: Any, *args: object) -> list[str]:
        lease = (self.owner, repr(LEASE_S))
        return list(self.link.call(lambda _: script(keys=self.keys, args=(*args, *lease))))

    def _renew_while_holding(self) -> bool:
        """Renew the lease if this ledger holds calls in flight; False (and the heartbeat ends) when
        it holds none."""
        with self._lock:
            if self._mine <= 0:
                self._heart = None
                return False
        # Unreachable: the next reserve or release says so. Cut off past its lease, this process's
        # holds are taken back by the others, so its calls then in flight may overshoot the cap
        # by what they cost (the price of not letting a dead process hold the budget for ever).
        try:
            self._run(self._renew_script, "")
        except SharedStateUnavailable:
            with self._lock:  # Redis is gone: stop beating; the next reserve or release starts again
                self._heart = None
            return False
        return True

    def _hold(self, calls: int) -> None:
        with self._lock:
            self._mine += calls
            if self._mine > 0 and self._heart is None:
                # A weak reference: a ledger dropped with holds left (a caller that never released)
                # ends its heartbeat instead of being kept alive by it.
                self._heart = threading.Thread(
                    target=_heartbeat, args=(weakref.ref(self),), name="budget-lease", daemon=True
                )
                self._heart.start()

    def _adopt(self, state: list[str]) -> None:
        """Mirror the totals Redis returned (called under ``self._lock``)."""
        values = dict(zip(_FIELDS, state, strict=True))
        self.spent_usd = float(values["spent_usd"])
        self.reserved_usd = float(values["reserved_usd"])
        for name in ("spent_tokens", "calls", "reserved_tokens", "in_flight", "refused"):
            setattr(self, name, int(float(values[name])))

    def reserve(self, r: Reservation) -> None:
        if self.closed or self.degraded:
            super().reserve(r)
            return
        b = self.budget
        args = (
            repr(r.cost_usd),
            r.tokens,
            r.calls,
            _cap(b.max_cost_usd),
            _cap(b.max_tokens),
            _cap(b.max_calls),
        )
        try:
            refused_by, *state = self._run(self._reserve_script, *args)
        except SharedStateUnavailable as exc:
            if b.on_unreachable != "local":
                with self._lock:
                    self.refused += 1
                raise
            self.degraded = True
            self.link.warn_once(f"{self.name} budget: {exc}; going on with this process's own ledger")
            super().reserve(r)
            return
        with self._lock:
            self._adopt(state)
            if refused_by:
                self.refused += 1  # as Redis counted it
                self._check(r)  # raises the message a local ledger gives, from the shared totals
                raise BudgetExceeded(f"{self.name} budget: refused ({refused_by})", limit=refused_by)
        self._hold(r.calls)

    def release(self, r: Reservation, *, cost_usd: float = 0.0, tokens: int = 0, sent: bool = True) -> None:
        if self.degraded:
            super().release(r, cost_usd=cost_usd, tokens=tokens, sent=sent)
            return
        args = (repr(r.cost_usd), r.tokens, r.calls, repr(cost_usd), tokens, 1 if sent else 0)
        self._hold(-r.calls)
        try:
            _, *state = self._run(self._release_script, *args)
        except SharedStateUnavailable as exc:
            log.info("%s budget: not settled in Redis, its hold stays counted there (%s)", self.name, exc)
            super().release(r, cost_usd=cost_usd, tokens=tokens, sent=sent)
            return
        with self._lock:
            self._adopt(state)
