"""The pilot network definition (`pilot.toml`), shipped as package data."""
