"""The light client (`chainnode.light`) on a real chain: real execution, real certificates, real
validator-set changes 4 -> 5 -> (key rotation) -> 4, and every refusal it promises."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chainnode import light
from chainnode.app import governance, proof
from chainnode.core import crypto, quorum, types
from tests.governance_harness import Network
from tests.light_harness import CertifiedChain


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("light"))


def _last_proposal(chain: CertifiedChain) -> int:
    return governance.get_proposal_count(chain.state)


def _add_validator(net: Network, chain: CertifiedChain, entity_id: str) -> None:
    certificate, key = net.issue(
        "beijing", entity_id, roles=("observer", "validator"), sectors=("government",)
    )
    assert chain.run_one(chain.zone_tx("beijing", "register", certificate)).ok
    chain.add_key(entity_id, key)
    assert chain.run_one(
        chain.council_tx("miit", "propose", "add_validator", (entity_id,), chain.height + 20)
    ).ok
    assert chain.run_one(chain.council_tx("moe", "vote", _last_proposal(chain), True)).ok


@pytest.fixture(scope="module")
def chain(net: Network) -> CertifiedChain:
    """4 validators -> 5 -> validator-05's key rotated -> 4, with records written in each era."""
    chain = CertifiedChain(net)
    chain.run(chain.put("pku", "era-4"))
    _add_validator(net, chain, "validator-05")
    chain.run(chain.put("pku", "era-5"))
    certificate, new_key = net.issue(
        "beijing", "validator-05", roles=("observer", "validator"), sectors=("government",)
    )
    renewed = chain.run_one(chain.zone_tx("beijing", "renew", certificate))
    assert renewed.ok
    chain.add_key("validator-05", new_key)
    chain.run(chain.put("pku", "era-rotated"))
    assert chain.run_one(
        chain.council_tx("miit", "propose", "remove_validator", ("validator-05",), chain.height + 20)
    ).ok
    assert chain.run_one(chain.council_tx("moe", "vote", _last_proposal(chain), True)).ok
    chain.run(chain.put("pku", "era-4-again"))
    chain.run()
    return chain


def _put_heights(chain: CertifiedChain) -> dict[str, int]:
    """Height of each records.put by its key."""
    found = {}
    for height, block in chain.blocks.items():
        for tx in block.transactions:
            if tx.module == "records":
                found[tx.args[0]] = height
    return found


def test_the_chain_went_through_four_sets(chain: CertifiedChain) -> None:
    sizes = [
        (height + 1, quorum.decode_validator_set(change.validators).size)
        for height, change in sorted(chain.changes.items())
    ]
    assert [size for _, size in sizes] == [5, 5, 4]
    assert governance.get_validator_set(chain.state) == chain.net.genesis.validators


def test_follows_every_change_and_verifies_proofs_of_every_era(chain: CertifiedChain) -> None:
    state = chain.follow(chain.start_light_state())
    assert state.height == chain.height and state.header_hash == chain.blocks[chain.height].hash
    assert [start for start, _ in state.sets] == [1, *(height + 1 for height in sorted(chain.changes))]
    for key, height in _put_heights(chain).items():
        result = proof.verify_proof_for_chain(chain.compute_proof(height), state.chain_id, state)
        assert result.height == height and result.transaction.args[0] == key
        # The set the light client learned for that height is the one the chain's history holds.
        assert state.get_validator_set(height) == governance.get_validator_set_at(chain.state, height)
    # With the genesis alone (no light client), proofs after the first change fail, never pass.
    late = chain.compute_proof(_put_heights(chain)["era-5"])
    with pytest.raises(proof.ProofError) as refused:
        proof.verify_proof(late, chain.net.genesis)
    assert refused.value.check == "validator_set"


def test_a_proof_above_the_light_clients_height_is_refused(chain: CertifiedChain) -> None:
    height = _put_heights(chain)["era-4-again"]
    state = chain.follow(chain.start_light_state(), up_to=height - 1)
    with pytest.raises(proof.ProofError) as refused:
        proof.verify_proof_for_chain(chain.compute_proof(height), state.chain_id, state)
    assert refused.value.check == "validator_set"


def _first_change(chain: CertifiedChain) -> int:
    return min(chain.changes)


def _refusal(state: light.LightState, header: bytes, certificate: bytes, **options: object) -> str:
    with pytest.raises(light.LightError) as refused:
        light.advance(state, header, certificate, **options)  # type: ignore[arg-type]
    return refused.value.check


def test_refuses_a_change_without_its_proof_or_with_a_forged_one(chain: CertifiedChain) -> None:
    changed = _first_change(chain)
    state = chain.follow(chain.start_light_state(), up_to=changed)
    header, certificate = chain.header_bytes(changed + 1), chain.certificate_bytes(changed + 1)
    assert _refusal(state, header, certificate) == "validator_set"
    proof_ = chain.changes[changed]
    # A set with one key swapped for a stranger's: the write-set path no longer leads to the root.
    forged_set = quorum.decode_validator_set(proof_.validators)
    stranger = quorum.Validator("validator-05", crypto.SigningKey.generate().public_key)
    forged = replace(proof_, validators=quorum.ValidatorSet((*forged_set.validators[:-1], stranger)).encode())
    assert _refusal(state, header, certificate, change=forged) == "change_proof"
    assert _refusal(state, header, certificate, change=replace(proof_, leaf_index=0)) == "change_proof"
    assert _refusal(state, header, certificate, change=replace(proof_, height=changed - 1)) == "change_proof"
    # A proof for the right block, offered one header too late (the client skipped the change).
    assert (
        _refusal(
            chain.follow(chain.start_light_state(), up_to=changed - 1), header, certificate, change=proof_
        )
        == "validator_set"
    )
    assert light.advance(state, header, certificate, proof_).height == changed + 1


def _sign_by_strangers(block: types.Block, count: int) -> quorum.CommitCertificate:
    payload = types.compute_vote_payload(
        types.VoteKind.COMMIT, block.header.chain_id, 0, block.height, block.hash
    )
    signatures = tuple((index, crypto.SigningKey.generate().sign(payload)) for index in range(count))
    return quorum.CommitCertificate(block.height, 0, block.hash, signatures)


def test_refuses_certificates_below_quorum_or_by_another_set(chain: CertifiedChain) -> None:
    state = chain.start_light_state()
    block = chain.blocks[1]
    validators = chain.net.genesis.validators
    short = chain.certify(block, validators, signers=validators.quorum - 1)
    assert _refusal(state, block.header.encode(), short.encode()) == "quorum"
    # Strangers certifying the real header (the validators' indexes, other keys).
    assert (
        _refusal(state, block.header.encode(), _sign_by_strangers(block, validators.size).encode())
        == "quorum"
    )
    # A header that names the strangers' own set is refused before any signature is counted.
    strangers = quorum.ValidatorSet(
        tuple(
            quorum.Validator(v.entity_id, crypto.SigningKey.generate().public_key)
            for v in validators.validators
        )
    )
    stranger_header = replace(block.header, validator_set_hash=strangers.compute_hash())
    stranger_block = types.Block.create(stranger_header, block.transactions)
    stranger_certificate = _sign_by_strangers(stranger_block, validators.size)
    assert _refusal(state, stranger_header.encode(), stranger_certificate.encode()) == "validator_set"
    # A certificate of another block.
    assert _refusal(state, block.header.encode(), chain.certificate_bytes(2)) == "certificate_binding"
    assert light.advance(state, block.header.encode(), chain.certificate_bytes(1)).height == 1


def test_refuses_gaps_broken_links_other_chains_and_old_heights(
    net: Network, chain: CertifiedChain, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = chain.follow(chain.start_light_state(), up_to=2)
    header, certificate = chain.header_bytes(4), chain.certificate_bytes(4)
    assert _refusal(state, header, certificate, sequential=True) == "gap"
    # Sparse mode may skip heights of an unchanged set...
    assert light.advance(state, header, certificate).height == 4
    # ...but never across a change.
    changed = _first_change(chain)
    assert (
        _refusal(state, chain.header_bytes(changed + 2), chain.certificate_bytes(changed + 2))
        == "validator_set"
    )
    # The next header must name the latest as its parent.
    relinked = replace(chain.blocks[3].header, parent_hash=bytes(32))
    relinked_block = types.Block.create(relinked, chain.blocks[3].transactions)
    relinked_certificate = chain.certify(relinked_block, net.genesis.validators)
    assert _refusal(state, relinked.encode(), relinked_certificate.encode()) == "parent"
    assert _refusal(state, chain.header_bytes(2), chain.certificate_bytes(2)) == "height"
    # A header of a third chain (its own genesis, its own validators).
    other = CertifiedChain(Network.create(tmp_path_factory.mktemp("third"), chain_id="third-net"))
    other.run()
    other.run()
    other.run()
    assert _refusal(state, other.header_bytes(3), other.certificate_bytes(3)) == "chain_id"
    assert _refusal(state, b"\x93junk", certificate) == "format"


def test_a_fork_is_detected_and_halts(chain: CertifiedChain) -> None:
    state = chain.follow(chain.start_light_state(), up_to=3)
    # The validators sign a second block at height 2 (another timestamp).
    forked_header = replace(chain.blocks[2].header, timestamp_ms=chain.blocks[2].header.timestamp_ms + 1)
    forked = types.Block.create(forked_header, chain.blocks[2].transactions)
    certificate = chain.certify(forked, chain.net.genesis.validators)
    assert (
        light.check_conflict(state, chain.blocks[2].hash, chain.header_bytes(2), chain.certificate_bytes(2))
        == state
    )
    halted = light.check_conflict(state, chain.blocks[2].hash, forked_header.encode(), certificate.encode())
    assert halted.halted.startswith("fork at height 2")
    assert _refusal(halted, chain.header_bytes(4), chain.certificate_bytes(4)) == "halted"
    # An uncertified "fork" is no evidence: refused, the state is not halted.
    short = chain.certify(forked, chain.net.genesis.validators, signers=1)
    with pytest.raises(light.LightError) as refused:
        light.check_conflict(state, chain.blocks[2].hash, forked_header.encode(), short.encode())
    assert refused.value.check == "quorum"


def test_states_and_change_proofs_round_trip(chain: CertifiedChain) -> None:
    state = chain.follow(chain.start_light_state())
    assert light.decode_light_state(state.encode()) == state
    for change in chain.changes.values():
        assert light.decode_validator_change_proof(change.encode()) == change
        assert light.validator_change_proof_from_json(change.to_json()) == change
    bad = chain.changes[_first_change(chain)].to_json()
    bad["path"] = [item.upper() for item in bad["path"]]
    with pytest.raises(light.LightError) as refused:
        light.validator_change_proof_from_json(bad)
    assert refused.value.check == "format"
    with pytest.raises(light.LightError):
        light.decode_light_state(b"\x92\x01\x02")
    json_form = state.to_json()
    assert json_form["height"] == chain.height and json_form["validator_changes"] == [
        height + 1 for height in sorted(chain.changes)
    ]
