"""The `chainnode` command: argument parsing and one function per subcommand.

The top of the house: imports tools, node, sdk and below, lazily, so `--help` stays fast.
"""
