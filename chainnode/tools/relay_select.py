"""What a relayer carries and which headers it sends: pure functions over the nodes' answers.

Theory of operation: `select_transactions` reads a page of events (`GET /v1/events`) and picks
the transactions a `Selection` carries, each once, in chain order, with the cursor just past its
last event in the page (where the relayer may resume once it is carried).  `plan_client_updates`
lists the headers that bring a light client from one height to another under the light-client
rules (`chainnode.light.advance`): heights are skipped while the validator set is unchanged, and
each change is crossed at the block that wrote it, the next header carrying its proof.  Both are
used by `chainnode.tools.relay` and tested alone (tests/unit/test_relay.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

# `chainnode.app.xchain`'s message events: a send names its destination first, a delivery its source.
SEND_EVENT = "xchain.sent"  # (dest, seq, sender, payload hash)
RECEIVED_EVENT = "xchain.received"  # (source, seq, sender, payload hash)


# ---------------------------------------------------------------- selection


@dataclass(frozen=True, slots=True)
class Selection:
    """Which source transactions a relayer carries."""

    destination_chain: str  # every send to this chain, and every delivery of its messages (acks)
    module: str | None = None  # and, when set, every transaction with an event of this module
    entity: str | None = None  # ... about or signed by this entity (with `module` or alone)

    def is_selected(self, event: Mapping[str, Any]) -> bool:
        """Whether the transaction that emitted `event` (an event of `GET /v1/events`) is carried."""
        if event.get("name") in (SEND_EVENT, RECEIVED_EVENT):
            # A message to the destination, or the delivery here of one of its messages (carried
            # back, the delivery acknowledges the message on the chain that sent it).
            attributes = event.get("attributes") or []
            return bool(attributes) and attributes[0] == self.destination_chain
        if self.module is None and self.entity is None:
            return False
        if self.module is not None and event.get("module") != self.module:
            return False
        return self.entity is None or self.entity in (event.get("entity"), event.get("signer"))


@dataclass(frozen=True, slots=True)
class SelectedTx:
    """A source transaction to carry, with where its events put it."""

    tx_hash: str  # hex
    height: int
    tx_index: int
    timestamp_ms: int  # its block's timestamp on the source chain
    cursor: str  # the cursor just past its last selected event in the page


def select_transactions(
    events: Iterable[Mapping[str, Any]], selection: Selection, *, skip: str = ""
) -> list[SelectedTx]:
    """The transactions `selection` carries among `events` (in chain order), each once, except
    `skip` (the last one already carried, whose events may straddle pages)."""
    selected: dict[str, SelectedTx] = {}
    for event in events:
        tx_hash = str(event["tx_hash"])
        if tx_hash == skip:
            continue
        if tx_hash in selected:
            selected[tx_hash] = replace(selected[tx_hash], cursor=str(event["cursor"]))
        elif selection.is_selected(event):
            selected[tx_hash] = SelectedTx(
                tx_hash,
                int(event["height"]),
                int(event["tx_index"]),
                int(event["timestamp_ms"]),
                str(event["cursor"]),
            )
    return list(selected.values())


# ---------------------------------------------------------------- light-client updates


@dataclass(frozen=True, slots=True)
class UpdateStep:
    """One header to carry to the destination's light client."""

    height: int
    change_height: int | None  # the block that wrote this header's new validator set, if any


def plan_client_updates(
    client_height: int, target_height: int, change_heights: Sequence[int]
) -> list[UpdateStep]:
    """The headers that take a light client at `client_height` to at least `target_height`.

    A validator-set change written by block c is effective from c + 1; a client may skip
    heights while the set is unchanged, but must accept header c and then header c + 1 with the
    proof that block c wrote the new set (`chainnode.light.verify.advance`)."""
    steps: list[UpdateStep] = []
    height = client_height
    for change in sorted(set(change_heights)):
        if change < height or change >= target_height:
            continue  # already followed, or effective past what is needed now
        if change > height:
            steps.append(UpdateStep(change, None))
        steps.append(UpdateStep(change + 1, change))
        height = change + 1
    if target_height > height:
        steps.append(UpdateStep(target_height, None))
    return steps
