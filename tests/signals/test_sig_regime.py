"""§7 regime, votes and consensus, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.signals import Vote, classify_regime, combine_votes
from gateway.signals.regime import (
    cascade_vote,
    efficiency_ratio,
    gravity_vote,
    positioning_vote,
    realized_vol,
    vol_bucket,
    vol_percentile,
)


def test_efficiency_ratio_hand_computed() -> None:
    """Closes 100, 101, 100, 102, 103: net 3, path 1+1+2+1 = 5 -> ER 0.6 -> trending up."""
    closes = [100.0, 101.0, 100.0, 102.0, 103.0]
    assert efficiency_ratio(closes, window=4) == pytest.approx(0.6)
    r = classify_regime(closes, er_window=4)
    assert r.trend == "trending" and r.trend_direction == "long"
    flat = classify_regime([100.0, 101.0, 100.0, 101.0, 100.0], er_window=4)
    assert flat.efficiency_ratio == 0.0 and flat.trend == "ranging"
    assert flat.trend_direction == "neutral"
    assert classify_regime([100.0]).trend == "unknown"
    assert efficiency_ratio([5.0, 5.0, 5.0]) == 0.0


def test_realized_vol_hand_computed() -> None:
    """Closes 100, 110, 100: returns ±ln 1.1 = ±0.0953102; sample σ = 0.0953102·√2 = 0.134789;
    hourly bars (24 per day) scale by √24."""
    assert realized_vol([100.0, 110.0, 100.0]) == pytest.approx(0.134789, abs=1e-6)
    assert realized_vol([100.0, 110.0, 100.0], periods_per_day=24.0) == pytest.approx(
        0.134789 * math.sqrt(24.0), abs=1e-5
    )
    assert realized_vol([100.0, 101.0]) is None


def test_vol_bucket_by_percentile() -> None:
    calm = 100 * np.exp(np.cumsum(np.tile([0.005, -0.005], 40)))
    wild = calm[-1] * np.exp(np.cumsum(np.tile([0.05, -0.05], 10)))
    rising = np.concatenate((calm, wild))
    assert vol_percentile(rising) == 1.0
    assert classify_regime(rising).vol_bucket == "high"
    amplitude = np.linspace(0.05, 0.001, 100)  # vol falls steadily: the last window is calmest
    falling = 100 * np.exp(np.cumsum(amplitude * np.tile([1.0, -1.0], 50)))
    assert vol_percentile(falling) == pytest.approx(1 / 80)  # 99 returns -> 80 windows
    assert classify_regime(falling).vol_bucket == "low"
    assert classify_regime(calm[:10]).vol_bucket == "unknown"
    assert vol_bucket(0.5) == "medium"


def test_sub_signal_votes() -> None:
    assert positioning_vote(0.9002) == "short"  # T7's crowded longs
    assert positioning_vote(0.2) == "long"
    assert positioning_vote(0.5) == "neutral"
    assert positioning_vote(None) == "neutral"
    assert gravity_vote(0.749) == "long" and gravity_vote(-0.3) == "short"
    assert gravity_vote(0.1) == "neutral"
    assert cascade_vote(0.35, 0.15) == "short" and cascade_vote(0.0, 0.2) == "long"
    assert cascade_vote(0.1, 0.09) == "neutral"


def test_consensus_hand_computed() -> None:
    """carry short, positioning short, gravity long, cascade neutral, momentum short, weights 1:
    score (-1 -1 +1 -1) / 5 = -0.4 -> bias short; agreement 3/4 = 0.75;
    confidence 0.4 · 0.75 = 0.3; gravity is structural and opposite -> divergence."""
    votes = [
        Vote("carry", "short", 1.0, ""),
        Vote("positioning", "short", 1.0, ""),
        Vote("gravity", "long", 1.0, ""),
        Vote("cascade", "neutral", 1.0, ""),
        Vote("momentum", "short", 1.0, ""),
    ]
    c = combine_votes(votes)
    assert c.bias == "short"
    assert c.score == pytest.approx(-0.4)
    assert c.agreement == pytest.approx(0.75)
    assert c.confidence == pytest.approx(0.3)
    assert c.divergence and c.divergent == ("gravity",)


def test_consensus_weights_ties_and_empty() -> None:
    """Weights 3 (long) vs 1 + 1 (short): score (3 - 2) / 5 = 0.2 -> long; agreement 3/5;
    confidence 0.2 · 0.6 = 0.12; momentum opposing is not structural -> carry only."""
    votes = [
        Vote("gravity", "long", 3.0, ""),
        Vote("carry", "short", 1.0, ""),
        Vote("momentum", "short", 1.0, ""),
    ]
    c = combine_votes(votes)
    assert c.bias == "long" and c.agreement == pytest.approx(0.6)
    assert c.confidence == pytest.approx(0.12) and c.divergent == ("carry",)
    tie = combine_votes([Vote("carry", "long", 1.0, ""), Vote("gravity", "short", 1.0, "")])
    assert tie.bias == "neutral" and tie.agreement == 0.5 and tie.confidence == 0.0
    assert not tie.divergence
    none = combine_votes([Vote("carry", "neutral", 1.0, "")])
    assert none.bias == "neutral" and none.agreement == 0.0 and none.confidence == 0.0
    unanimous = combine_votes([Vote("carry", "short", 1.0, ""), Vote("gravity", "short", 1.0, "")])
    assert unanimous.confidence == 1.0
