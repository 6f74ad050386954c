"""NMEA 0183 parsing: checksums, GGA/RMC fields, hemispheres, rejection counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.serial.nmea import Gga, NmeaDecoder, NmeaError, Rmc, checksum, parse

STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "serial" / "gnss_stream.nmea"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body):02X}"


def test_textbook_gga_and_rmc() -> None:
    gga = parse("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47")
    assert isinstance(gga, Gga)
    assert gga.lat == pytest.approx(48.1173)
    assert gga.lon == pytest.approx(11.516666, abs=1e-6)
    assert (gga.quality, gga.sats, gga.hdop, gga.alt_m) == (1, 8, 0.9, 545.4)
    rmc = parse("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A")
    assert isinstance(rmc, Rmc)
    assert rmc.valid and rmc.quality == 1
    assert (rmc.speed_kn, rmc.course_deg, rmc.date) == (22.4, 84.4, "230394")


def test_southern_and_western_hemispheres_are_negative() -> None:
    gga = parse(sentence("GNGGA,010203.00,3351.4080,S,15112.9180,W,1,05,1.8,3.0,M,20.0,M,,"))
    assert isinstance(gga, Gga)
    assert gga.lat == pytest.approx(-33.8568, abs=1e-6)
    assert gga.lon == pytest.approx(-151.2153, abs=1e-6)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48", "checksum"),
        ("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "checksum"),
        ("$GPGGA,123519*G1", "checksum"),
        ("GPGGA,123519,4807.038,N*47", "garbage"),
        ("$GPGGA,12\x01519*00", "garbage"),
        (sentence("GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,46.9,M,,"), "garbage"),
        (sentence("GPGGA,123519,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "garbage"),
        (sentence("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "garbage"),
        (sentence("GPGGA,123519,4807.038,N"), "garbage"),
        (sentence("gpgga,1"), "garbage"),
        (sentence("GPTXT," + "x" * 200), "too_long"),
    ],
)
def test_rejections_name_their_kind(line: str, kind: str) -> None:
    with pytest.raises(NmeaError) as err:
        parse(line)
    assert err.value.kind == kind


def test_other_sentences_are_valid_but_ignored() -> None:
    assert parse(sentence("GNVTG,,T,,M,0.021,N,0.039,K,A")) is None
    assert parse(sentence("PUBX,00,000000.00")) is None


def test_rmc_mode_indicator_sets_quality_and_void_has_none() -> None:
    rmc = parse(sentence("GNRMC,120000.00,A,4807.038,N,01131.000,E,0.0,,150326,,,D"))
    assert isinstance(rmc, Rmc) and rmc.quality == 2
    void = parse(sentence("GNRMC,120000.00,V,,,,,,,150326,,,N"))
    assert isinstance(void, Rmc) and not void.valid and void.lat is None
    estimated_but_n = parse(sentence("GNRMC,120000.00,A,4807.038,N,01131.000,E,0.0,,150326,,,N"))
    assert isinstance(estimated_but_n, Rmc) and not estimated_but_n.valid


def test_recorded_stream_gives_last_fix_and_counts() -> None:
    decoder = NmeaDecoder()
    fixes = []
    for n, raw in enumerate(STREAM.read_bytes().split(b"\n")):
        if raw:
            fix = decoder.feed(raw.decode("latin-1"), now=float(n))
            if fix is not None:
                fixes.append(fix)
    counts = decoder.counters()
    assert counts.sentences == 11
    assert counts.positions == 4 == len(fixes)
    assert counts.no_fix == 2
    assert counts.ignored == 5
    assert counts.bad_checksum == 3
    assert counts.garbage == 2  # a binary line and a chatty modem
    assert counts.too_long == 2
    last = decoder.fix()
    assert last is not None and last == fixes[-1]
    assert last.lat == pytest.approx(48 + 7.04 / 60)
    assert last.lon == pytest.approx(11 + 31.002 / 60)
    assert (last.quality, last.sats, last.hdop, last.alt_m) == (2, 10, 0.7, 546.0)
    # the first fix of the stream is the RMC of epoch 1, before any GGA: no sats/hdop yet
    assert fixes[0].quality == 1 and fixes[0].sats is None


def test_losing_the_fix_clears_the_position() -> None:
    decoder = NmeaDecoder()
    decoder.feed(sentence("GNGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), 0.0)
    assert decoder.fix() is not None
    decoder.feed(sentence("GNGGA,120001.00,,,,,0,00,99.99,,,,,,"), 1.0)
    assert decoder.fix() is None
    assert decoder.counters().no_fix == 1


def test_checksum_cannot_see_transposed_characters() -> None:
    """A property of NMEA's XOR checksum worth knowing: swapped digits pass; changed ones don't."""
    good = "GNGGA,120000.50,4807.03900,N,01131.00100,E,1,08,0.9,545.4,M,46.9,M,,"
    assert checksum(good.replace("4807.039", "4807.093")) == checksum(good)
    assert checksum(good.replace("4807.039", "4807.139")) != checksum(good)
