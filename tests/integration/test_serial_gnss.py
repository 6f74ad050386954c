"""GNSS reader over a real pty with pyserial on the slave end: positions, counters, staleness,
reconnect after the device goes away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config.settings import SerialSettings
from edge.serial.gnss import GnssReader
from edge.serial.nmea import checksum
from tests.plugins.ptys import PtyLink, wait_for

STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "serial" / "gnss_stream.nmea"


def sentence(body: str) -> bytes:
    return f"${body}*{checksum(body):02X}\r\n".encode()


def gga(utc: str, lat: str, lon: str, quality: int = 1) -> bytes:
    return sentence(f"GNGGA,{utc},{lat},N,{lon},E,{quality},07,1.1,12.5,M,46.9,M,,")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def link(tmp_path: Path) -> Iterator[PtyLink]:
    pty = PtyLink(tmp_path / "ttyGNSS")
    yield pty
    pty.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reader(link: PtyLink, clock: Clock) -> Iterator[GnssReader]:
    settings = SerialSettings(gnss_port=link.path, gnss_baud=9600, gnss_stale_s=10.0)
    gnss = GnssReader(settings, clock=clock, backoff_max_s=0.5)
    gnss.start()
    assert gnss.wait_connected(5.0)
    yield gnss
    assert gnss.stop(timeout=3.0), "reader thread did not stop"


def test_recorded_stream_positions_and_counts(link: PtyLink, reader: GnssReader) -> None:
    assert reader.position() is None
    link.write(STREAM.read_bytes())
    assert wait_for(lambda: reader.counters().nmea.positions == 4)
    # the stream's last two sentences are epoch 2's RMC and GGA: wait for the GGA to land
    assert wait_for(lambda: (p := reader.position()) is not None and p.sats == 10)
    pos = reader.position()
    assert pos is not None
    assert pos.lat == pytest.approx(48 + 7.04 / 60, abs=1e-7)
    assert pos.lon == pytest.approx(11 + 31.002 / 60, abs=1e-7)
    assert (pos.fix, pos.sats, pos.hdop, pos.alt_m) == (2, 10, 0.7, 546.0)
    assert pos.age_s == 0.0
    counts = reader.counters()
    assert counts.port.binary == 1  # the line of raw bytes never reached the parser
    assert counts.port.too_long == 1  # nor did the 400-byte line
    assert counts.port.lines == 16
    assert counts.nmea.sentences == 11
    assert counts.nmea.bad_checksum == 3
    assert counts.nmea.garbage == 1
    assert counts.nmea.too_long == 1
    assert counts.nmea.no_fix == 2
    assert counts.nmea.ignored == 5


def test_position_goes_stale(link: PtyLink, reader: GnssReader, clock: Clock) -> None:
    link.write(gga("101010.00", "4807.03800", "01131.00000"))
    assert wait_for(lambda: reader.position() is not None)
    clock.now += 9.5
    pos = reader.position()
    assert pos is not None and pos.age_s == pytest.approx(9.5)
    clock.now += 1.0
    assert reader.position() is None  # older than gnss_stale_s
    link.write(gga("101021.00", "4807.05000", "01131.00000"))
    assert wait_for(lambda: reader.position() is not None)


def test_reconnects_after_unplug_and_replug(link: PtyLink, reader: GnssReader) -> None:
    link.write(gga("101010.00", "4807.03800", "01131.00000"))
    assert wait_for(lambda: reader.position() is not None)

    link.unplug(remove_link=True)  # adapter pulled: reads fail, the path is gone
    assert wait_for(lambda: reader.counters().port.disconnects == 1)
    assert wait_for(lambda: not reader.connected)
    assert wait_for(lambda: reader.counters().port.open_failures >= 1)  # retrying with backoff
    assert reader.position() is not None  # the last fix stays valid until stale

    link.plug()  # a new device node behind the same path
    assert wait_for(lambda: reader.counters().port.opens == 2)
    assert reader.wait_connected(5.0)
    link.write(gga("101011.00", "4808.00000", "01131.00000", quality=4))
    assert wait_for(lambda: (p := reader.position()) is not None and p.fix == 4)
    pos = reader.position()
    assert pos is not None and pos.lat == pytest.approx(48 + 8 / 60)


def test_master_closed_and_reopened_in_place(link: PtyLink, reader: GnssReader) -> None:
    link.replug()  # master closed, new pty behind the same link at once
    assert wait_for(lambda: reader.counters().port.opens == 2)
    assert reader.wait_connected(5.0)
    link.write(gga("101012.00", "4807.03800", "01131.00000"))
    assert wait_for(lambda: reader.position() is not None)
    assert reader.counters().port.disconnects == 1


def test_starts_before_the_device_exists(tmp_path: Path) -> None:
    path = tmp_path / "ttyLATE"
    gnss = GnssReader(SerialSettings(gnss_port=str(path)), backoff_max_s=0.2)
    gnss.start()
    try:
        assert wait_for(lambda: gnss.counters().port.open_failures >= 2)
        assert not gnss.connected
        late = PtyLink(path)
        try:
            assert gnss.wait_connected(5.0)
            late.write(gga("101013.00", "4807.03800", "01131.00000"))
            assert wait_for(lambda: gnss.position() is not None)
        finally:
            late.close()
    finally:
        assert gnss.stop(timeout=3.0)
