"""`python -m cellbridge ...` runs the command-line interface."""

from cellbridge.cli.main import main

raise SystemExit(main())
