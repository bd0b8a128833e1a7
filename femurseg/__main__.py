"""``python -m femurseg`` runs the ``femurseg`` command line."""

from femurseg.cli import main

raise SystemExit(main())
