"""`python -m edge.cli` runs the `edge` command (tests and the bench start the daemon this way)."""

from edge.cli.main import main

raise SystemExit(main())
