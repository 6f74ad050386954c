"""The view's schema, one for SQLite and PostgreSQL: the versioned migrations (version N is
`MIGRATIONS[dialect][N - 1]`, applied in order on open), and the portable SQL the stores share."""

from __future__ import annotations

# Each migration is a list of statements per dialect; version N is MIGRATIONS[N - 1].
COMMON_1 = [
    """CREATE TABLE IF NOT EXISTS results (
        id TEXT PRIMARY KEY, device TEXT NOT NULL, boot BIGINT NOT NULL, seq BIGINT NOT NULL,
        camera TEXT NOT NULL, task TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, text TEXT NOT NULL, search TEXT NOT NULL,
        images INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS results_at ON results(at)",
    "CREATE INDEX IF NOT EXISTS results_where ON results(device, camera, task, at)",
    "CREATE INDEX IF NOT EXISTS results_seq ON results(device, boot, seq)",
    """CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY, device TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, event TEXT NOT NULL,
        reason TEXT NOT NULL, camera TEXT, task TEXT, received_at DOUBLE PRECISION NOT NULL,
        payload TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_at ON events(at)",
    """CREATE TABLE IF NOT EXISTS devices (
        device TEXT PRIMARY KEY, status TEXT, state TEXT, health TEXT,
        updated DOUBLE PRECISION NOT NULL)""",
]
MIGRATIONS: dict[str, list[list[str]]] = {
    "sqlite": [
        [
            *COMMON_1,
            """CREATE TABLE IF NOT EXISTS images (
                result_id TEXT NOT NULL, part INTEGER NOT NULL, jpeg BLOB NOT NULL,
                bytes INTEGER NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (result_id, part))""",
            "CREATE VIRTUAL TABLE IF NOT EXISTS results_fts USING fts5(id UNINDEXED, search)",
        ],
    ],
    "postgresql": [
        [
            *COMMON_1,
            """CREATE TABLE IF NOT EXISTS images (
                result_id TEXT NOT NULL, part INTEGER NOT NULL, jpeg BYTEA NOT NULL,
                bytes INTEGER NOT NULL, received_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (result_id, part))""",
            "ALTER TABLE results ADD COLUMN IF NOT EXISTS tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', search)) STORED",
            "CREATE INDEX IF NOT EXISTS results_tsv ON results USING GIN (tsv)",
        ],
    ],
}
# Version 2: `cameras`, each (device, camera, task)'s newest result and newest result with a picture,
# kept on insert, so the overview and the filter lists read a row per camera instead of scanning
# every result (14 s at a million results before it; see docs/view.md).
CAMERAS_2 = [
    """CREATE TABLE IF NOT EXISTS cameras (
        device TEXT NOT NULL, camera TEXT NOT NULL, task TEXT NOT NULL,
        latest_at DOUBLE PRECISION NOT NULL, latest_id TEXT NOT NULL,
        pictured_at DOUBLE PRECISION, pictured_id TEXT, PRIMARY KEY (device, camera, task))""",
    # one device's timeline, newest first, without sorting the device's every result
    "CREATE INDEX IF NOT EXISTS results_device_at ON results(device, at)",
]
REBUILD_CAMERAS = [
    "DELETE FROM cameras",
    """INSERT INTO cameras (device, camera, task, latest_at, latest_id)
        SELECT device, camera, task, at, MAX(id) FROM results r
        WHERE at = (SELECT MAX(at) FROM results m WHERE m.device = r.device AND m.camera = r.camera
                    AND m.task = r.task)
        GROUP BY device, camera, task, at""",
    """UPDATE cameras SET pictured_at = p.at, pictured_id = p.id FROM (
        SELECT device, camera, task, at, MAX(id) AS id FROM results r WHERE images > 0
        AND at = (SELECT MAX(at) FROM results m WHERE m.device = r.device AND m.camera = r.camera
                  AND m.task = r.task AND m.images > 0)
        GROUP BY device, camera, task, at) AS p
        WHERE cameras.device = p.device AND cameras.camera = p.camera AND cameras.task = p.task""",
]
for dialect in MIGRATIONS:
    MIGRATIONS[dialect].append([*CAMERAS_2, *REBUILD_CAMERAS])
SCHEMA_VERSION = 2

GAPS = """
SELECT device, boot, prev + 1, seq - 1 FROM (
    SELECT device, boot, seq, LAG(seq) OVER (PARTITION BY device, boot ORDER BY seq) AS prev
    FROM results WHERE device = {p}
) AS s WHERE prev IS NOT NULL AND seq > prev + 1
"""

RESULT_COLS = "id, device, boot, seq, camera, task, at, text, images, payload"
EVENT_COLS = "id, device, at, event, reason, camera, task, payload"
