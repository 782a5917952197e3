"""How transactions land on the simulated cluster: congestion, priority fees, delays, losses.

What a Solana user sees, and what this model reproduces:

- **Slots** last 400 ms (`SLOT_MS`, Solana's; a chain run with another CHAIN_SLOT_MS
  keeps every figure below in slots, its seconds scaled). A transaction sent now lands,
  at the earliest, in the next slot; under load it waits, or its broadcast is lost on
  the way to the leader (the RPC node's forward is dropped, the leader's queue is full)
  and it never lands unless it is sent again.
- **Congestion** varies slowly, over minutes: a level from 0 (quiet) to 1 (blocks full).
  It is the logistic of a stationary Gaussian process with the Ornstein-Uhlenbeck
  correlation `exp(-lag / congestion_slots)` (mean-reverting: an episode of congestion
  lasts minutes, then fades), drawn as a sum of `congestion_features` random cosines
  whose frequencies follow that process's spectrum, without the fastest ones
  (`congestion_fastest_slots`: nothing turns within a minute). So the level is a
  pure function of (seed, slot): any slot costs the same to compute, in order or not,
  and a restarted chain sees the same congestion again. With the defaults the median
  level is 0.25, the level exceeds 0.75 about 10 % of the time and 0.9 about 3 %.
- **The fee market.** Each slot's lowest priority fee among the transactions that landed
  in it (what `getRecentPrioritizationFees` reports, in micro-lamports per compute
  unit) is 0 with probability `zero_share × (1 − level)²` (a zero-fee transaction got
  in: most slots when quiet, almost none when congested); otherwise it is log-normal
  (spread `fee_spread`) around a median rising geometrically from `fee_quiet` (level 0)
  to `fee_congested` (level 1). The same distribution is the market a transaction
  competes in: its *rank* is the share of that distribution its compute unit price
  beats (ties at 0 count half). Paying the 75th percentile of recent fees ranks about
  0.75.
- **Landing.** A transaction's *pressure* is `level × (1 − rank)`: the share of block
  space demanded by transactions paying more. A broadcast is lost with chance
  `loss_floor + loss_max × pressure²`; otherwise it is ready to land after a geometric
  number of slots (at least one; each slot's chance `next_slot × exp(−pressure_rate ×
  pressure)`), and lands in the first slot from then on whose lowest landed fee it
  pays. So getRecentPrioritizationFees never contradicts a landed transaction, and a
  price below the market waits for a cheap slot, which under congestion may not come
  before its blockhash expires: rebroadcasting cannot beat a market it does not pay.
  Paying more never lands later and is never lost more often; more congestion never
  helps.

With the defaults (see `LandingParams`), measured by `bench/landing.py` (4,000
transactions per row at a fixed level; once: one broadcast; rebroadcast: the same bytes
every 5 slots until the blockhash expires at 150 slots; latency from the first send):

| level | price (µlamports/CU) | once: lost | p50 | p90 | rebroadcast: never landed | p50 | p90 |
|---|---|---|---|---|---|---|---|
| 0.1 quiet | 0 | 1 % | 0.4 s | 1.2 s | 0 % | 0.4 s | 1.2 s |
| 0.5 busy | 0 | 17 % | 2.8 s | 6.4 s | 0 % | 3.2 s | 6.4 s |
| 0.5 busy | p75 of recent fees (~27,000) | 2 % | 0.8 s | 1.6 s | 0 % | 0.8 s | 1.6 s |
| 0.9 congested | 0 | 77 % | 26 s | 50 s | 30 % | 28 s | 51 s |
| 0.9 congested | p75 of recent fees (~330,000) | 5 % | 0.8 s | 2.0 s | 0 % | 0.8 s | 2.4 s |
| 0.9 congested | 1,000,000 | 0.4 % | 0.4 s | 0.8 s | 0 % | 0.4 s | 0.8 s |

The chain decides what a lost broadcast or a long delay means (a rebroadcast of the
same signature draws again; an expired blockhash never lands); this module only draws.
`Congestion.broadcast` is what the chain calls: the level and slot fees of `seed`.
Pure: no I/O, no clock; randomness comes from the seed and the `random.Random` handed in.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypeVar

SLOT_MS = 400  # the figures above (seconds) are at this slot length
_NORMAL = NormalDist()
_V = TypeVar("_V")
_CACHED_SLOTS = 4096  # levels and fees kept: more than one blockhash lifetime of slots


@dataclass(frozen=True, slots=True)
class LandingParams:
    """Every knob of the landing model, with defaults that give mainnet-like figures.

    Fees are micro-lamports per compute unit; durations are slots (400 ms by default:
    CHAIN_SLOT_MS).

    - `congestion_median`: the median congestion level (0..1). 0.25: mostly quiet.
    - `congestion_swing`: how far the level swings, in log-odds per standard deviation
      of the underlying process. 1.8 puts the level above 0.75 about 10 % of the time.
    - `congestion_slots`: the correlation time of congestion. 1,500 slots = 10 minutes.
    - `congestion_fastest_slots`: no component of congestion turns faster than this
      period (150 slots = 1 minute), so it is steady over a transaction's life.
    - `congestion_features`: random cosines summed (more: closer to Gaussian, slower).
    - `fee_quiet`, `fee_congested`: median nonzero per-slot minimum fee at level 0 and
      level 1 (1,000 and 300,000: a quiet hour and a memecoin launch on a hot pool).
    - `fee_spread`: standard deviation of the log of those fees.
    - `zero_share`: share of slots whose minimum fee is 0 at level 0.
    - `next_slot`: chance to land in each slot when nothing outbids the transaction.
    - `pressure_rate`: how fast that chance falls with pressure (3.3: 20 times lower at
      pressure 0.9, a zero-fee transaction in a congested slot).
    - `loss_floor`, `loss_max`: a broadcast's chance to be lost with no pressure, and
      the part added at full pressure (quadratically).
    - `horizon_slots`: a broadcast that found no slot it pays within this many slots
      (300: two minutes, longer than a blockhash lives) is lost.
    """

    congestion_median: float = 0.25
    congestion_swing: float = 1.8
    congestion_slots: float = 1_500.0
    congestion_fastest_slots: float = 150.0
    congestion_features: int = 64
    fee_quiet: float = 1_000.0
    fee_congested: float = 300_000.0
    fee_spread: float = 1.0
    zero_share: float = 0.95
    next_slot: float = 0.9
    pressure_rate: float = 3.3
    loss_floor: float = 0.005
    loss_max: float = 0.85
    horizon_slots: int = 300

    def __post_init__(self) -> None:
        checks = {
            "congestion_median": 0 < self.congestion_median < 1,
            "congestion_swing": self.congestion_swing >= 0,
            "congestion_slots": self.congestion_slots > 0,
            "congestion_fastest_slots": self.congestion_fastest_slots > 0,
            "congestion_features": self.congestion_features >= 1,
            "fee_quiet": 0 < self.fee_quiet <= self.fee_congested,
            "fee_spread": self.fee_spread > 0,
            "zero_share": 0 <= self.zero_share <= 1,
            "next_slot": 0 < self.next_slot <= 1,
            "pressure_rate": self.pressure_rate >= 0,
            "loss_floor": self.loss_floor >= 0 and self.loss_floor + self.loss_max < 1,
            "loss_max": self.loss_max >= 0,
            "horizon_slots": self.horizon_slots >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid landing parameters: {', '.join(bad)}")


def zero_fee_share(params: LandingParams, level: float) -> float:
    """The chance that a slot's lowest landed fee is 0 at this congestion level."""
    return params.zero_share * (1.0 - level) ** 2


def median_fee(params: LandingParams, level: float) -> float:
    """The median nonzero per-slot minimum fee at this level (geometric in the level)."""
    return params.fee_quiet * math.exp(level * math.log(params.fee_congested / params.fee_quiet))


def fee_at(params: LandingParams, level: float, u: float) -> int:
    """The fee market's `u`-quantile at this level (0 <= u < 1): a slot's minimum fee
    when `u` is uniform, and the price that ranks `u` (the inverse of `rank`)."""
    zeros = zero_fee_share(params, level)
    if u < zeros:
        return 0
    z = _NORMAL.inv_cdf(min(max((u - zeros) / (1.0 - zeros), 1e-12), 1 - 1e-12))
    return max(1, round(median_fee(params, level) * math.exp(params.fee_spread * z)))


def rank(params: LandingParams, level: float, cu_price: int) -> float:
    """The share of the fee market a compute unit price beats (ties at 0 count half)."""
    zeros = zero_fee_share(params, level)
    if cu_price <= 0:
        return zeros / 2
    z = math.log(cu_price / median_fee(params, level)) / params.fee_spread
    return zeros + (1.0 - zeros) * _NORMAL.cdf(z)


def paid_share(params: LandingParams, level: float, cu_price: int) -> float:
    """The share of slots whose lowest landed fee (`fee_at`, rounded) is at most `cu_price`:
    the slots a transaction paying that price can land in."""
    zeros = zero_fee_share(params, level)
    if cu_price <= 0:
        return zeros
    z = math.log((cu_price + 0.5) / median_fee(params, level)) / params.fee_spread
    return zeros + (1.0 - zeros) * _NORMAL.cdf(z)


def pressure(params: LandingParams, level: float, cu_price: int) -> float:
    """The share of block space demanded by transactions paying more than `cu_price`."""
    return level * (1.0 - rank(params, level, cu_price))


def landing_chance(params: LandingParams, level: float, cu_price: int) -> float:
    """The chance, each slot, that a broadcast not lost becomes ready to land (it lands
    then, or in the first later slot whose fee it pays: see `draw`)."""
    return params.next_slot * math.exp(-params.pressure_rate * pressure(params, level, cu_price))


def loss_chance(params: LandingParams, level: float, cu_price: int) -> float:
    """The chance that one broadcast is lost (it never lands unless sent again)."""
    return params.loss_floor + params.loss_max * pressure(params, level, cu_price) ** 2


def _every_slot_free(ahead: int) -> int:
    """No slot's fee stops a landing: `draw` then gives the delay alone."""
    return 0


def draw(
    params: LandingParams,
    level: float,
    cu_price: int,
    rng: random.Random,
    fee_ahead: Callable[[int], int] = _every_slot_free,
) -> int | None:
    """One broadcast at this congestion level: slots until it lands, or None when lost.

    `fee_ahead(k)` is the lowest fee landed in the slot `k` slots from now. The
    broadcast lands in the first slot, from its drawn delay on, whose lowest fee it pays
    (within `horizon_slots`; else it is lost): a transaction never lands where
    getRecentPrioritizationFees would show a higher minimum, and one that pays less
    than the market waits for a slot where the market paid nothing or little, which
    under congestion may never come.

    Always takes exactly two draws from `rng`, each through an inverse CDF that is
    monotone in the price, so two prices compared on the same `rng` state and slots
    land in the order of their prices (a higher price lands no later, and is lost only
    if the lower one is too).
    """
    if cu_price < 0:
        raise ValueError("compute unit price must be >= 0")
    if not 0.0 <= level <= 1.0:
        raise ValueError("congestion level must be within 0..1")
    lost, wait = rng.random(), rng.random()
    if lost < loss_chance(params, level, cu_price):
        return None
    chance = landing_chance(params, level, cu_price)
    # Geometric, at least one slot: the first slot whose draw succeeds.
    delay = 1 if chance >= 1.0 else 1 + math.floor(math.log1p(-wait) / math.log1p(-chance))
    for ahead in range(delay, params.horizon_slots + 1):
        if fee_ahead(ahead) <= cu_price:
            return ahead
    return None


def _uniform(key: bytes, tag: bytes, slot: int) -> float:
    """A uniform in (0, 1) that depends only on (key, tag, slot)."""
    digest = hashlib.blake2b(struct.pack("<q", slot) + tag, key=key, digest_size=8).digest()
    return ((int.from_bytes(digest, "little") >> 11) + 0.5) * 2.0**-53


class Congestion:
    """The cluster's congestion and fee market, slot by slot, from one seed.

    `level` and `recent_fees` are pure functions of (seed, slot); a small cache makes a
    window of recent slots (what `getRecentPrioritizationFees` asks every slot) cheap.
    `broadcast` draws one broadcast's fate at the slot it is sent.
    """

    def __init__(self, seed: int, params: LandingParams = LandingParams()) -> None:
        self.seed = seed
        self.params = params
        self._key = hashlib.blake2b(f"fees:{seed}".encode(), digest_size=32).digest()
        rng = random.Random(f"congestion:{seed}")
        # Frequencies (radians per slot) from the Ornstein-Uhlenbeck spectrum (a Cauchy
        # law of scale 1/congestion_slots), cut at the fastest period allowed.
        scale = 1.0 / params.congestion_slots
        fastest = 2 * math.pi / params.congestion_fastest_slots
        reach = math.atan(fastest / scale) / math.pi
        self._waves = [
            (scale * math.tan(math.pi * rng.uniform(-reach, reach)), rng.uniform(0, 2 * math.pi))
            for _ in range(params.congestion_features)
        ]
        self._amplitude = math.sqrt(2.0 / params.congestion_features)
        self._centre = math.log(params.congestion_median / (1 - params.congestion_median))
        self._levels: OrderedDict[int, float] = OrderedDict()
        self._fees: OrderedDict[int, int] = OrderedDict()

    def level(self, slot: int) -> float:
        """The congestion level at `slot`, 0 (quiet) to 1 (blocks full)."""
        cached = self._levels.get(slot)
        if cached is not None:
            return cached
        z = self._amplitude * sum(math.cos(w * slot + phase) for w, phase in self._waves)
        x = self._centre + self.params.congestion_swing * z
        value = 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0
        _remember(self._levels, slot, value)
        return value

    def fee(self, slot: int) -> int:
        """The lowest priority fee among the transactions landed in `slot` (µlamports/CU)."""
        cached = self._fees.get(slot)
        if cached is not None:
            return cached
        value = fee_at(self.params, self.level(slot), _uniform(self._key, b"fee", slot))
        _remember(self._fees, slot, value)
        return value

    def recent_fees(self, slot: int, n: int = 150) -> list[tuple[int, int]]:
        """(slot, prioritizationFee) for the slots (slot − n, slot], oldest first, as
        `getRecentPrioritizationFees` answers; slots before 0 do not exist."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return [(s, self.fee(s)) for s in range(max(slot - n + 1, 0), slot + 1)]

    def broadcast(self, slot: int, cu_price: int, rng: random.Random) -> int | None:
        """Slots from `slot` until a broadcast sent then lands, or None when it is lost.

        It lands only in a slot whose `fee` it pays (see `draw`)."""
        return draw(
            self.params, self.level(slot), cu_price, rng, lambda ahead: self.fee(slot + ahead)
        )


def _remember(cache: OrderedDict[int, _V], key: int, value: _V) -> None:
    """Keep `value`, forgetting the oldest entry beyond the cache's size."""
    cache[key] = value
    if len(cache) > _CACHED_SLOTS:
        cache.popitem(last=False)
