"""PBFT-style consensus as a sans-I/O state machine.

`consensus.engine.Engine.step(event) -> list[effect]`: events are messages
from peers, timer ticks carrying the logical time, and blocks fetched by
catch-up; effects are sends, broadcasts, vote persistence, block commits and
block requests, executed in order by the node shell.  Nothing here does I/O,
reads a clock or uses global randomness, so a seeded simulator can drive the
real engines and replay any run exactly.
"""
