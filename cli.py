"""The `chainnode` command (the console script and `python -m cli`).

The commands live in the `chainnode.cli` package, the top of the house; this module only hands
over to it, so that `python -m cli` works from a checkout as the console script does.
"""

from chainnode.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
