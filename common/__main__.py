"""``python -m parcnetv2`` runs the command line."""

from parcnetv2.cli import main

raise SystemExit(main())
