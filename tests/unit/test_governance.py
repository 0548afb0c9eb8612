"""Council governance: proposals, M-of-N votes and their refusals, zones, validator-set changes
with history, chain parameters; all through `Executor.execute_block` over a real network's
genesis state (council of three, threshold two)."""

from __future__ import annotations

import pytest

from chainnode.app import genesis, governance
from chainnode.app.execution import InvalidBlockError
from chainnode.core import codec, crypto, identity, identity_records, quorum, types
from chainnode.core.errors import StorageError
from tests.factories import MapState
from tests.governance_harness import Chain, Network, codes, event_names

ErrorCode = types.ErrorCode


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("governance"))


@pytest.fixture
def chain(net: Network) -> Chain:
    return Chain(net)


def propose(chain: Chain, member: str, kind: str, *payload: object, lifetime: int = 10) -> types.Receipt:
    return chain.run_one(chain.council_tx(member, "propose", kind, payload, chain.height + 1 + lifetime))


def get_proposal(chain: Chain, proposal_id: int) -> governance.Proposal:
    proposal = governance.get_proposal(chain.state, proposal_id)
    assert proposal is not None
    return proposal


def register_validator(
    net: Network, chain: Chain, entity_id: str, zone: str = "beijing"
) -> crypto.SigningKey:
    certificate, key = net.issue(zone, entity_id, roles=("observer", "validator"), sectors=("government",))
    assert chain.run_one(chain.zone_tx(zone, "register", certificate)).ok
    return key


def grow_to_five(net: Network, chain: Chain) -> None:
    register_validator(net, chain, "validator-05")
    assert propose(chain, "miit", "add_validator", "validator-05").ok
    assert chain.run_one(chain.council_tx("moe", "vote", governance.get_proposal_count(chain.state), True)).ok
    assert governance.get_validator_set(chain.state).size == 5


def test_genesis_state_holds_council_history_and_params(net: Network, chain: Chain) -> None:
    assert governance.get_council(chain.state) == (2, ("miit", "moe", "pboc"))
    assert governance.get_validator_set_at(chain.state, 1) == net.genesis.validators
    assert governance.get_validator_change_heights(chain.state) == (1,)
    assert governance.get_chain_params(chain.state) == net.genesis.params
    # A state without the key falls back to what the caller knows, else the defaults.
    custom = genesis.ChainParams(block_txs_max=7)
    assert governance.get_chain_params(MapState({}), custom) == custom
    assert governance.get_chain_params(MapState({})) == genesis.ChainParams()


def test_add_validator_needs_m_approvals_and_applies_from_the_next_height(net: Network, chain: Chain) -> None:
    key = register_validator(net, chain, "validator-05")
    receipt = propose(chain, "miit", "add_validator", "validator-05")
    assert receipt.ok and event_names(receipt) == ["governance.proposed"]
    proposal = get_proposal(chain, 1)
    # The proposer's proposal is its approval; one of two is not enough: it stays open.
    assert proposal.approvals == ("miit",) and proposal.status == "open"
    assert governance.get_validator_set(chain.state).size == 4
    vote = chain.run_one(chain.council_tx("moe", "vote", 1, True))
    assert vote.ok
    assert event_names(vote) == ["governance.voted", "governance.executed", "validators.changed"]
    decided_at = chain.height
    assert get_proposal(chain, 1).status == "executed" and get_proposal(chain, 1).closed_height == decided_at
    grown = governance.get_validator_set(chain.state)
    assert grown.size == 5 and grown.validators[-1] == quorum.Validator("validator-05", key.public_key)
    # The history answers for every height: the old set up to the deciding block, the new one after.
    assert governance.get_validator_change_heights(chain.state) == (1, decided_at + 1)
    for height in (0, 1, decided_at):
        assert governance.get_validator_set_at(chain.state, height) == net.genesis.validators
    for height in (decided_at + 1, decided_at + 1000):
        assert governance.get_validator_set_at(chain.state, height) == grown
    stored = chain.state.get_state(identity_records.validator_history_key(decided_at + 1))
    assert stored == chain.state.get_state(identity_records.VALIDATOR_SET_KEY) == grown.encode()


def test_vote_refusals(net: Network, chain: Chain) -> None:
    register_validator(net, chain, "validator-05")
    propose(chain, "miit", "add_validator", "validator-05", lifetime=2)
    expires_at = get_proposal(chain, 1).expires_at_height
    receipts = chain.run(
        chain.council_tx("miit", "vote", 1, True),  # the proposer already approved
        chain.council_tx("moe", "vote", 2, True),  # no such proposal
        chain.entity_tx("pku", "governance", "vote", 1, True),  # an entity is no council member
        chain.council_tx("moe", "vote", 1, "yes"),  # not a boolean
    )
    assert codes(receipts) == [
        ErrorCode.DUPLICATE_VOTE,
        ErrorCode.UNKNOWN_PROPOSAL,
        ErrorCode.WRONG_SIGNER_KIND,
        ErrorCode.BAD_ARGUMENTS,
    ]
    # A council id that is not in state does not even authenticate; nor does a member's id with another key.
    stranger = chain.tx("council:stranger", crypto.SigningKey.generate(), "governance", "vote", 1, True)
    impostor = chain.tx("council:moe", net.council_key("pboc"), "governance", "vote", 1, True)
    for tx, code in ((stranger, ErrorCode.UNKNOWN_SIGNER), (impostor, ErrorCode.BAD_SIGNATURE)):
        with pytest.raises(InvalidBlockError) as refused:
            chain.execute(tx)
        assert refused.value.error_code == code
    while chain.height < expires_at:
        chain.run()
    assert get_proposal(chain, 1).get_status_at(chain.height + 1) == "expired"
    assert codes(chain.run(chain.council_tx("moe", "vote", 1, True))) == [ErrorCode.PROPOSAL_EXPIRED]
    assert governance.get_validator_set(chain.state).size == 4


def test_closed_and_rejected_proposals(net: Network, chain: Chain) -> None:
    grow_to_five(net, chain)
    assert codes(chain.run(chain.council_tx("pboc", "vote", 1, True))) == [ErrorCode.PROPOSAL_CLOSED]
    # With N = 3 and M = 2, two rejections make M unreachable.
    propose(chain, "miit", "remove_validator", "validator-05")
    first = chain.run_one(chain.council_tx("moe", "vote", 2, False))
    assert first.ok and get_proposal(chain, 2).status == "open"
    second = chain.run_one(chain.council_tx("pboc", "vote", 2, False))
    assert event_names(second) == ["governance.voted", "governance.rejected"]
    assert get_proposal(chain, 2).status == "rejected"
    assert governance.get_validator_set(chain.state).size == 5


def test_proposal_refusals(net: Network, chain: Chain) -> None:
    chain.run()
    chain.run()
    receipts = chain.run(
        chain.council_tx("miit", "propose", "remove_validator", ("validator-01",), 50),  # would leave 3
        chain.council_tx("miit", "propose", "add_validator", ("pku",), 50),  # lacks the validator role
        chain.council_tx("miit", "propose", "add_validator", ("validator-01",), 50),  # already one
        chain.council_tx("miit", "propose", "suspend_zone", ("beijing",), 50),  # hosts validators
        chain.council_tx("miit", "propose", "suspend_zone", ("atlantis",), 50),  # unknown zone
        chain.council_tx("miit", "propose", "dissolve_council", (), 50),  # unknown kind
        chain.council_tx("miit", "propose", "remove_zone", ("hainan",), 2),  # expires before this block
        chain.council_tx("miit", "propose", "set_params", ((("block_txs_max", 0),),), 50),
        chain.council_tx("miit", "propose", "set_params", ((("gas_price", 5),),), 50),
    )
    assert codes(receipts) == [
        ErrorCode.BAD_PROPOSAL,
        ErrorCode.BAD_PROPOSAL,
        ErrorCode.BAD_PROPOSAL,
        ErrorCode.BAD_PROPOSAL,
        ErrorCode.BAD_PROPOSAL,
        ErrorCode.BAD_ARGUMENTS,
        ErrorCode.PROPOSAL_EXPIRED,
        ErrorCode.BAD_ARGUMENTS,
        ErrorCode.BAD_ARGUMENTS,
    ]
    assert "below 4" in receipts[0].message
    assert governance.get_proposal_count(chain.state) == 0


def test_remove_validator_down_to_the_minimum(net: Network, chain: Chain) -> None:
    grow_to_five(net, chain)
    propose(chain, "pboc", "remove_validator", "validator-02")
    assert chain.run_one(chain.council_tx("miit", "vote", 2, True)).ok
    remaining = governance.get_validator_set(chain.state)
    assert [v.entity_id for v in remaining.validators] == [
        "validator-01",
        "validator-03",
        "validator-04",
        "validator-05",
    ]
    assert len(governance.get_validator_change_heights(chain.state)) == 3
    assert codes(
        chain.run(chain.council_tx("miit", "propose", "remove_validator", ("validator-05",), 99))
    ) == [ErrorCode.BAD_PROPOSAL]


def test_a_proposal_that_no_longer_holds_fails_when_decided(net: Network, chain: Chain) -> None:
    register_validator(net, chain, "validator-05")
    propose(chain, "miit", "add_validator", "validator-05")
    chain.run(chain.zone_tx("beijing", "revoke", "validator-05", "decommissioned"))
    vote = chain.run_one(chain.council_tx("moe", "vote", 1, True))
    assert vote.ok and event_names(vote) == ["governance.voted", "governance.failed"]
    proposal = get_proposal(chain, 1)
    assert proposal.status == "failed" and "revoked" in proposal.outcome
    assert governance.get_validator_set(chain.state).size == 4


def test_suspend_reinstate_and_remove_a_zone(net: Network, chain: Chain) -> None:
    propose(chain, "miit", "suspend_zone", "hainan")
    assert chain.run_one(chain.council_tx("pboc", "vote", 1, True)).ok
    certificate, _ = net.issue("hainan", "hainan-newcomer")
    # The zone's entities and its authority stop; other zones carry on.
    receipts = chain.run(
        chain.put("hainan-university"), chain.zone_tx("hainan", "register", certificate), chain.put("pku")
    )
    assert codes(receipts) == [ErrorCode.ZONE_NOT_ACTIVE, ErrorCode.ZONE_NOT_ACTIVE, ErrorCode.OK]
    propose(chain, "moe", "reinstate_zone", "hainan")
    chain.run(chain.council_tx("miit", "vote", 2, True))
    assert codes(chain.run(chain.put("hainan-university"))) == [ErrorCode.OK]
    propose(chain, "moe", "remove_zone", "hainan")
    chain.run(chain.council_tx("pboc", "vote", 3, True))
    zone = governance.get_zone_record(chain.state, "hainan")
    assert (
        zone is not None
        and zone.status == "removed"
        and identity_records.decode_zone_record(zone.encode()) == zone
    )
    assert codes(chain.run(chain.put("hainan-university"))) == [ErrorCode.ZONE_NOT_ACTIVE]
    # A removed zone's id is never admitted again.
    zone_key = crypto.SigningKey.generate()
    again = identity.create_zone_ca(
        net.root_certificate, net.root_key, zone_id="hainan", zone_name="Hainan", key=zone_key
    )
    refused = chain.run_one(
        chain.council_tx("miit", "propose", "admit_zone", (identity.certificate_der(again), "Hainan"), 99)
    )
    assert refused.code == ErrorCode.BAD_PROPOSAL and "never reused" in refused.message


def test_admit_a_zone_whose_authority_then_registers(net: Network, chain: Chain) -> None:
    zone_key = crypto.SigningKey.generate()
    zone_ca = identity.create_zone_ca(
        net.root_certificate, net.root_key, zone_id="zhejiang", zone_name="Zhejiang (Hangzhou)", key=zone_key
    )
    foreign_root_key = crypto.SigningKey.generate()
    foreign_root = identity.create_root_ca("Elsewhere", foreign_root_key)
    foreign_ca = identity.create_zone_ca(
        foreign_root, foreign_root_key, zone_id="jiangsu", zone_name="J", key=zone_key
    )
    refused = propose(chain, "miit", "admit_zone", identity.certificate_der(foreign_ca), "Jiangsu")
    assert refused.code == ErrorCode.BAD_CERTIFICATE
    assert propose(chain, "miit", "admit_zone", identity.certificate_der(zone_ca), "Zhejiang (Hangzhou)").ok
    assert governance.get_zone_record(chain.state, "zhejiang") is None
    assert chain.run_one(chain.council_tx("moe", "vote", 1, True)).ok
    zone = governance.get_zone_record(chain.state, "zhejiang")
    assert zone is not None and zone.status == "active"
    claims = identity.EntityClaims("zju", "zhejiang", ("submitter",), ("education",), "Zhejiang University")
    entity_key = crypto.SigningKey.generate()
    certificate = identity.issue_entity_certificate(zone_ca, zone_key, claims, entity_key.public_key)
    register = chain.tx(
        "zone:zhejiang", zone_key, "authority", "register", identity.certificate_der(certificate)
    )
    assert chain.run_one(register).ok
    assert codes(chain.run(chain.put("zju", signing_key=entity_key))) == [ErrorCode.OK]


def test_set_params(chain: Chain) -> None:
    propose(chain, "miit", "set_params", (("block_txs_max", 500), ("view_timeout_ms", 2000)))
    assert governance.get_chain_params(chain.state).block_txs_max == 2000
    receipt = chain.run_one(chain.council_tx("pboc", "vote", 1, True))
    assert "governance.params_changed" in event_names(receipt)
    params = governance.get_chain_params(chain.state)
    assert (params.block_txs_max, params.view_timeout_ms, params.block_bytes_max) == (
        500,
        2000,
        4 * 1024 * 1024,
    )
    stored = chain.state.get_state(identity_records.CHAIN_PARAMS_KEY)
    assert stored is not None and genesis.decode_chain_params(stored) == params


def test_validators_follow_revocation_and_renewal(net: Network, chain: Chain) -> None:
    # At the minimum a revoked validator stays in the set (the council must replace it).
    receipt = chain.run_one(chain.zone_tx("shanghai", "revoke", "validator-02", "host decommissioned"))
    assert event_names(receipt) == ["authority.revoked", "validators.kept"]
    assert governance.get_validator_set(chain.state).size == 4
    grow_to_five(net, chain)
    # Renewing a validator with a new key puts the new key in the set from the next height.
    certificate, new_key = net.issue(
        "beijing", "validator-05", roles=("observer", "validator"), sectors=("government",)
    )
    renewed = chain.run_one(chain.zone_tx("beijing", "renew", certificate))
    assert event_names(renewed) == ["authority.renewed", "validators.changed"]
    validators = governance.get_validator_set(chain.state)
    assert validators.validators[validators.index_of("validator-05") or 0].public_key == new_key.public_key
    # Above the minimum, revocation removes the validator from the next height on.
    removed = chain.run_one(chain.zone_tx("sichuan", "revoke", "validator-04", "compromised"))
    assert event_names(removed) == ["authority.revoked", "validators.changed"]
    assert governance.get_validator_set(chain.state).index_of("validator-04") is None
    assert governance.get_validator_set_at(chain.state, chain.height).index_of("validator-04") is not None


def test_threshold_one_executes_at_proposal(net: Network) -> None:
    chain = Chain(net)
    chain.state.values[identity_records.COUNCIL_KEY] = codec.encode((1, ("miit", "moe", "pboc")))
    receipt = propose(chain, "moe", "set_params", (("block_txs_max", 10),))
    assert event_names(receipt) == ["governance.proposed", "governance.executed", "governance.params_changed"]
    assert governance.get_chain_params(chain.state).block_txs_max == 10


def test_the_cli_offers_exactly_the_proposal_kinds_governance_knows() -> None:
    from chainnode.app import governance
    from chainnode.cli import governance as cli_governance

    assert cli_governance.PROPOSAL_KINDS == governance.PROPOSAL_KINDS


def test_decoded_records_are_memoised_by_their_bytes_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from chainnode.app import governance_state

    monkeypatch.setattr(governance_state, "DECODED_RECORDS_MAX", 4)
    monkeypatch.setattr(governance_state, "_decoded", type(governance_state._decoded)())
    records = {
        f"entity-{n}": identity_records.EntityRecord(
            f"entity-{n}", "beijing", bytes([n]) * 32, ("submitter",), ("education",), 0, 10**13, False, b""
        )
        for n in range(6)
    }
    state = MapState({identity_records.entity_key(name): record.encode() for name, record in records.items()})
    first = governance_state.get_entity_record(state, "entity-0")
    assert first == records["entity-0"]
    assert governance_state.get_entity_record(state, "entity-0") is first, "the same bytes decode once"
    # New bytes under the same key (a revocation, say) decode anew: the memo is keyed by bytes.
    changed = identity_records.EntityRecord(
        "entity-0", "beijing", bytes(32), ("submitter",), ("education",), 0, 10**13, True, b""
    )
    state.values[identity_records.entity_key("entity-0")] = changed.encode()
    assert governance_state.get_entity_record(state, "entity-0") == changed
    for name in list(records)[1:]:
        assert governance_state.get_entity_record(state, name) == records[name]
    assert len(governance_state._decoded) == 4, "bounded: the oldest go first"
    # Bytes that do not decode are never memoised: each read says the state is corrupt.
    state.values[identity_records.entity_key("entity-5")] = b"\x93\x01\x02"
    for _ in range(2):
        with pytest.raises(StorageError, match="corrupt entity"):
            governance_state.get_entity_record(state, "entity-5")
