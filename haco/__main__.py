"""`python -m haco ...`: the same as the `haco` command."""

from haco.cli import main

raise SystemExit(main())
