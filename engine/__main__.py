"""``python -m engine``: the ``lantern`` command (see :mod:`engine.cli`)."""

from engine.cli import main

raise SystemExit(main())
