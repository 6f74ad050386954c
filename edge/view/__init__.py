"""`edge view`: what the cameras saw, on a web page.

- `store`: results, pictures, events and device status in SQLite (FTS5 search) or, through
  `store_pg`, PostgreSQL (the fleet store); one versioned schema, idempotent writes.
- `ingest`: the subscription that fills the store (joins pictures to their results).
- `pages`: server-rendered HTML, one URL per view.
- `server`: the standard library's HTTP server, with a password beyond loopback.
"""
