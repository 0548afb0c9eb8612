"""Operator and auditor tools: network init, devnet, bench, audit, export.

May import every layer below; imported only by the CLI.
"""
