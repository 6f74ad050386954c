"""Heat and power: sysfs readings from a fake tree, the policy's hysteresis and active hours, the
scheduler's levers, and doctor's line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.cli.doctor.power import check_power
from edge.config.settings import GateSettings, PowerSettings, TaskSettings
from edge.pipeline.jobs import Scheduler
from edge.power.monitor import PowerMonitor
from edge.power.policy import PowerChange, PowerPolicy, inside
from edge.power.sensors import read_board
from tests.helpers.fake_sysfs import FakeSysfs


def at(hour: int, minute: int = 0) -> float:
    """An epoch second at local `hour:minute` today."""
    lt = time.localtime()
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hour, minute, 0, 0, 0, -1))


def test_pi_tree_reads_temperature_and_firmware_flags(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.zone(0, "cpu-thermal", 61.2)
    fs.throttled(0x50005)  # under-voltage now, throttled now (and both have occurred)
    r = read_board(tmp_path)
    assert (r.temperature_c, r.zone) == (61.2, "cpu-thermal")
    assert r.throttled is True and r.under_voltage is True and r.flags == 0x50005
    fs.throttled(0x50000)  # only "has occurred" bits: nothing now
    r = read_board(tmp_path)
    assert r.throttled is False and r.under_voltage is False


def test_jetson_zones_hottest_soc_zone_and_pmic_ignored(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.zone(0, "CPU-therm", 48.5)
    fs.zone(1, "GPU-therm", 55.0)
    fs.zone(2, "PMIC-Die", 100.0)  # a constant 100 °C on Jetsons: not the board's temperature
    fs.zone(3, "AO-therm", 44.0)
    r = read_board(tmp_path)
    assert (r.temperature_c, r.zone) == (55.0, "GPU-therm")
    assert r.throttled is None and r.under_voltage is None  # no firmware flags on a Jetson
    assert len(r.zones) == 4


def test_rpi_volt_hwmon_alone_reports_under_voltage(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.rpi_volt(True)
    assert read_board(tmp_path).under_voltage is True
    fs.rpi_volt(False)
    assert read_board(tmp_path).under_voltage is False


def test_empty_tree_reads_nothing(tmp_path: Path) -> None:
    r = read_board(tmp_path)
    assert r.temperature_c is None and r.throttled is None and r.under_voltage is None


def test_hot_cool_hysteresis_and_events(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    policy = PowerPolicy(PowerSettings(sysfs_root=tmp_path, hot_c=80, cool_c=70, stretch=3))
    seen: list[str] = []
    factors: list[float] = []
    for temp in (60, 79.9, 80.0, 85, 75, 70.5, 69.9, 75, 79):
        fs.zone(0, "cpu-thermal", temp)
        seen += [c.event for c in policy.update(read_board(tmp_path), at(12))]
        factors.append(policy.interval_factor)
    assert seen == ["hot_start", "hot_end"]
    assert factors == [1, 1, 3, 3, 3, 3, 1, 1, 1]
    assert policy.hot_episodes == 1


def test_firmware_flag_events_start_and_stop(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.zone(0, "cpu-thermal", 50)
    policy = PowerPolicy(PowerSettings(sysfs_root=tmp_path))
    events = []
    for flags in (0x0, 0x4, 0x4, 0x1 | 0x4, 0x1, 0x0):
        fs.throttled(flags)
        events += [c.event for c in policy.update(read_board(tmp_path), at(12))]
    assert events == ["throttled_start", "under_voltage_start", "throttled_end", "under_voltage_end"]


@pytest.mark.parametrize(
    ("window", "minute", "expected"),
    [
        ((6 * 60, 20 * 60), 5 * 60 + 59, False),
        ((6 * 60, 20 * 60), 6 * 60, True),
        ((6 * 60, 20 * 60), 19 * 60 + 59, True),
        ((6 * 60, 20 * 60), 20 * 60, False),
        ((22 * 60, 5 * 60), 23 * 60, True),  # wraps past midnight
        ((22 * 60, 5 * 60), 4 * 60, True),
        ((22 * 60, 5 * 60), 12 * 60, False),
    ],
)
def test_active_window(window: tuple[int, int], minute: int, expected: bool) -> None:
    assert inside(window, minute) is expected


def test_active_hours_pause_and_resume_events(tmp_path: Path) -> None:
    policy = PowerPolicy(PowerSettings(sysfs_root=tmp_path, active_hours="06:00-20:00"))
    board = read_board(tmp_path)
    assert [c.event for c in policy.update(board, at(12))] == []
    assert not policy.paused
    assert [c.event for c in policy.update(board, at(20, 1))] == ["inactive_start"]
    assert policy.paused
    assert [c.event for c in policy.update(board, at(23))] == []
    assert [c.event for c in policy.update(board, at(6))] == ["inactive_end"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"active_hours": "6-20"}, "active_hours"),
        ({"active_hours": "06:00-06:00"}, "active_hours"),
        ({"active_hours": "25:00-06:00"}, "active_hours"),
        ({"hot_c": 70, "cool_c": 75}, "cool_c"),
        ({"cool_c": 60}, "cool_c"),
    ],
)
def test_bad_power_settings_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        PowerSettings(**section)


def scheduler() -> Scheduler:
    tasks = [
        TaskSettings(name="digest", kind="summarize", trigger="interval", interval_s=10, source_task="digest")
    ]
    return Scheduler(tasks, GateSettings())


def test_scheduler_stretches_intervals_and_holds_everything_scheduled() -> None:
    s = scheduler()
    assert len(s.on_tick(0.0)) == 1
    assert s.on_tick(10.0) and not s.on_tick(15.0)
    s.interval_factor = 3.0
    assert not s.on_tick(39.0)
    assert s.on_tick(40.0)  # 30 s after the last run
    s.interval_factor = 1.0
    s.held = True
    assert not s.on_tick(100.0)
    s.held = False
    assert s.on_tick(100.0)


def test_monitor_applies_the_policy_to_its_callback_and_emits(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.zone(0, "cpu-thermal", 90)
    applied: list[tuple[float, bool]] = []
    emitted: list[PowerChange] = []
    mon = PowerMonitor(
        PowerSettings(sysfs_root=tmp_path, hot_c=80, stretch=5, active_hours="06:00-20:00"),
        lambda f, held: applied.append((f, held)),
        emitted.append,
        clock=lambda: at(21),
    )
    mon.poll()
    assert applied[-1] == (5.0, True)
    assert {c.event for c in emitted} == {"hot_start", "inactive_start"}
    st = mon.status()
    assert (st.temperature_c, st.hot, st.active) == (90.0, True, False)


def test_doctor_power_line(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    assert check_power(PowerSettings(sysfs_root=tmp_path, hot_c=80)).status == "warn"  # nothing to read
    fs.zone(0, "cpu-thermal", 52.25)
    fs.throttled(0)
    ok = check_power(PowerSettings(sysfs_root=tmp_path, hot_c=80))
    assert ok.status == "ok", ok.line()
    assert "52.2 °C (cpu-thermal" in ok.detail or "52.3 °C (cpu-thermal" in ok.detail
    assert "throttled no, under-voltage no" in ok.detail and "not hot" in ok.detail
    fs.throttled(0x1)
    bad = check_power(PowerSettings(sysfs_root=tmp_path))
    assert bad.status == "warn" and "under-voltage yes" in bad.detail and bad.fix
