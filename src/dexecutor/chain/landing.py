"""How transactions land on the simulated cluster: congestion, priority fees, delays, losses.

What a Solana user sees, and what this model reproduces:

- **Slots** last 400 ms (`SLOT_MS`). A transaction sent now lands, at the earliest, in
  the next slot; under load it waits, or its broadcast is lost on the way to the leader
  (the RPC node's forward is dropped, the leader's queue is full) and it never lands
  unless it is sent again.
- **Congestion** varies slowly, over minutes: a level from 0 (quiet) to 1 (blocks full).
  It is the logistic of a stationary Gaussian process with the Ornstein-Uhlenbeck
  correlation `exp(-lag / congestion_slots)` (mean-reverting: an episode of congestion
  lasts minutes, then fades), drawn as a sum of `congestion_features` random cosines
  whose frequencies follow that process's spectrum, without the fastest ones
  (`congestion_fastest_slots`: nothing changes within a few seconds). So the level is a
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
  space demanded by transactions paying more. Each slot it lands with chance
  `next_slot × exp(−pressure_rate × pressure)` (so the delay is geometric, at least one
  slot), and a broadcast is lost with chance `loss_floor + loss_max × pressure²`. Paying
  more never lands later and never loses more often; more congestion never helps.

With the defaults (see `LandingParams`; figures from `bench/landing.py`, one broadcast):

| level | price | lands next slot | mean delay | broadcast lost |
|---|---|---|---|---|
| 0.1 (quiet) | 0 | 73 % | 1.4 slots | 1 % |
| 0.9 (congested) | 0 | 5 % | 21 slots | 69 % |
| 0.9 (congested) | 75th percentile of recent fees | 43 % | 2.3 slots | 5 % |
| 0.9 (congested) | 95th percentile | 77 % | 1.3 slots | 1 % |

The chain decides what a lost broadcast or a long delay means (a rebroadcast of the
same signature draws again; an expired blockhash never lands); this module only draws.
Pure: no I/O, no clock; randomness comes from the seed and the `random.Random` handed in.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections import OrderedDict
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypeVar

SLOT_MS = 400
_NORMAL = NormalDist()
_V = TypeVar("_V")
_CACHED_SLOTS = 4096  # levels and fees kept: more than one blockhash lifetime of slots


@dataclass(frozen=True, slots=True)
class LandingParams:
    """Every knob of the landing model, with defaults that give mainnet-like figures.

    Fees are micro-lamports per compute unit; durations are slots (400 ms).

    - `congestion_median`: the median congestion level (0..1). 0.25: mostly quiet.
    - `congestion_swing`: how far the level swings, in log-odds per standard deviation
      of the underlying process. 1.7 puts the level above 0.75 about 10 % of the time.
    - `congestion_slots`: the correlation time of congestion. 750 slots = 5 minutes.
    - `congestion_fastest_slots`: no component of congestion turns faster than this
      period (75 slots = 30 s), so it is steady over a transaction's life.
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
    """

    congestion_median: float = 0.25
    congestion_swing: float = 1.7
    congestion_slots: float = 750.0
    congestion_fastest_slots: float = 75.0
    congestion_features: int = 64
    fee_quiet: float = 1_000.0
    fee_congested: float = 300_000.0
    fee_spread: float = 1.0
    zero_share: float = 0.95
    next_slot: float = 0.9
    pressure_rate: float = 3.3
    loss_floor: float = 0.005
    loss_max: float = 0.85

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


def pressure(params: LandingParams, level: float, cu_price: int) -> float:
    """The share of block space demanded by transactions paying more than `cu_price`."""
    return level * (1.0 - rank(params, level, cu_price))


def landing_chance(params: LandingParams, level: float, cu_price: int) -> float:
    """The chance, each slot, that a broadcast not lost lands in that slot."""
    return params.next_slot * math.exp(-params.pressure_rate * pressure(params, level, cu_price))


def loss_chance(params: LandingParams, level: float, cu_price: int) -> float:
    """The chance that one broadcast is lost (it never lands unless sent again)."""
    return params.loss_floor + params.loss_max * pressure(params, level, cu_price) ** 2


def draw(params: LandingParams, level: float, cu_price: int, rng: random.Random) -> int | None:
    """One broadcast at this congestion level: slots until it lands, or None when lost.

    Always takes exactly two draws from `rng`, each through an inverse CDF that is
    monotone in the price, so two prices compared on the same `rng` state land in the
    order of their prices (a higher price lands no later, and is lost only if the lower
    one is too).
    """
    if cu_price < 0:
        raise ValueError("compute unit price must be >= 0")
    if not 0.0 <= level <= 1.0:
        raise ValueError("congestion level must be within 0..1")
    lost, wait = rng.random(), rng.random()
    if lost < loss_chance(params, level, cu_price):
        return None
    chance = landing_chance(params, level, cu_price)
    if chance >= 1.0:
        return 1
    # Geometric, at least one slot: the first slot whose draw succeeds.
    return 1 + math.floor(math.log1p(-wait) / math.log1p(-chance))


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
        """Slots from `slot` until a broadcast sent then lands, or None when it is lost."""
        return draw(self.params, self.level(slot), cu_price, rng)


def _remember(cache: OrderedDict[int, _V], key: int, value: _V) -> None:
    """Keep `value`, forgetting the oldest entry beyond the cache's size."""
    cache[key] = value
    if len(cache) > _CACHED_SLOTS:
        cache.popitem(last=False)
