"""A profile set live (the emulator following a load) stays exact and bounded."""

from __future__ import annotations

import pytest

from infergy.ptd_bridge import watts_profile as wp
from infergy.ptd_bridge.watts_profile import WattsProfile


def test_live_steps_append_and_integrate_exactly() -> None:
    p = WattsProfile.constant(100.0)
    for k in range(1, 1001):  # a step every 10 ms alternating 100 W / 300 W
        p.set_from(k * 0.01, 300.0 if k % 2 else 100.0)
    # from 0.01 s on, half the time at 300 W, half at 100 W
    assert p.energy_j(0.01, 10.01) == pytest.approx(10.0 * 200.0)
    assert p.energy_j(0.0, 0.01) == pytest.approx(1.0)


def test_a_live_profile_forgets_old_knots_but_keeps_recent_energies(monkeypatch) -> None:
    monkeypatch.setattr(wp, "MAX_KNOTS", 200)
    monkeypatch.setattr(wp, "KEEP_S", 1.0)
    p = WattsProfile.constant(50.0)
    for k in range(1, 2001):
        p.set_from(k * 0.01, 150.0 if k % 2 else 50.0)
    assert len(p._t) <= 400  # bounded
    assert p.energy_j(19.0, 20.0) == pytest.approx(100.0)  # recent: mean 100 W
    assert p.watts_at(20.5) == 50.0
