"""The simulator's schedule flags: what `fixgw run` renders from its `[schedule]` is what the
simulator parses back, so the embedded venue rolls over exactly when the gateway does."""

from __future__ import annotations

from datetime import time

import pytest

from gateway.config.model import ScheduleConfig
from gateway.venue_sim.__main__ import build_parser
from gateway.venue_sim.schedule_flags import schedule_flags, schedule_from_flags


def _parsed(argv: list[str]) -> ScheduleConfig:
    p = build_parser()
    return schedule_from_flags(p, p.parse_args(argv))


@pytest.mark.parametrize("schedule", [
    ScheduleConfig(),
    ScheduleConfig(reset_time_utc=time(23, 59, 45), rollover_s=90),
    ScheduleConfig(mode="non-stop"),
])
def test_rendered_flags_parse_back_to_the_same_schedule(schedule: ScheduleConfig) -> None:
    assert _parsed(schedule_flags(schedule)) == schedule


def test_the_default_is_krakens_rollover() -> None:
    assert _parsed([]) == ScheduleConfig(reset_time_utc=time(22), rollover_s=30)


@pytest.mark.parametrize(("argv", "says"), [
    (["--rollover-s", "0"], "--rollover-s: Input should be greater than or equal to 1"),
    (["--reset-time-utc", "25:00"], "--reset-time-utc: hour must be in 0..23"),
])
def test_a_bad_flag_is_a_usage_error_naming_it(argv: list[str], says: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parsed(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err

