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
Known gap: holds of a process killed mid-call stay reserved in Redis until the hash is deleted.
"""

from __future__ import annotations

from promptlift.client.budget import BudgetLedger, Reservation
from promptlift.client.config import Budget
from promptlift.client.shared import RedisLink
from promptlift.errors import BudgetExceeded, SharedStateUnavailable
from promptlift.log import get_logger

log = get_logger("budget")

_FIELDS = ("spent_usd", "spent_tokens", "calls", "reserved_usd", "reserved_tokens", "in_flight", "refused")

# Both scripts return {refused_by, the seven totals as strings} (Lua numbers would be truncated).
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
"""

# ARGV: cost, tokens, calls, max_cost, max_tokens, max_calls ('' for no cap)
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
return state('')
"""
)

# ARGV: held cost, held tokens, held calls, spent cost, spent tokens, sent (1 or 0)
_RELEASE_LUA = (
    _STATE
    + """
local held = math.max(0, num('reserved_usd') - tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'reserved_usd', string.format('%.17g', held))
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', -tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'in_flight', -tonumber(ARGV[3]))
redis.call('HINCRBYFLOAT', KEYS[1], 'spent_usd', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'spent_tokens', tonumber(ARGV[5]))
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'calls', tonumber(ARGV[3])) end
return state('')
"""
)


def _cap(value: float | int | None) -> str:
    return "" if value is None else repr(value)


class SharedLedger(BudgetLedger):
    """A ``BudgetLedger`` whose totals live in Redis; the same methods and messages. Thread-safe."""

    def __init__(self, budget: Budget, name: str = "client"):
        super().__init__(budget, name)
        assert budget.shared is not None
        self.link = RedisLink(budget.shared)
        self.key = f"{budget.key_prefix}budget:{name}"
        self.degraded = False
        self._reserve_script = self.link.client.register_script(_RESERVE_LUA)
        self._release_script = self.link.client.register_script(_RELEASE_LUA)

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
            refused_by, *state = self.link.call(lambda _: self._reserve_script(keys=[self.key], args=args))
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

    def release(self, r: Reservation, *, cost_usd: float = 0.0, tokens: int = 0, sent: bool = True) -> None:
        if self.degraded:
            super().release(r, cost_usd=cost_usd, tokens=tokens, sent=sent)
            return
        args = (repr(r.cost_usd), r.tokens, r.calls, repr(cost_usd), tokens, 1 if sent else 0)
        try:
            _, *state = self.link.call(lambda _: self._release_script(keys=[self.key], args=args))
        except SharedStateUnavailable as exc:
            log.info("%s budget: not settled in Redis, its hold stays counted there (%s)", self.name, exc)
            super().release(r, cost_usd=cost_usd, tokens=tokens, sent=sent)
            return
        with self._lock:
            self._adopt(state)
