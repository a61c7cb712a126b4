"""python -m graphpass: the same as the `graphpass` command."""

from .cli import main

raise SystemExit(main())
