"""Inclusion proofs from a real chain served over real HTTP: valid proofs verify, any altered byte fails."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainnode.app.proof import PROOF_FIELDS, compute_proof
from chainnode.core import crypto, quorum, types
from chainnode.sdk.client import Client, ProofError, verify_proof
from chainnode.sdk.errors import ClientError
from chainnode.tools.export import open_ledger_snapshot
from tests.factories import run_cli_process
from tests.integration.api_harness import ServerThread
from tests.integration.audit_chain import BuiltChain, LedgerService, build_chain

HEX_FIELDS = ("tx_hash", "block_hash", "block_header", "commit_certificate", "transaction", "receipt")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain(tmp_path_factory.mktemp("proof"), heights=4, txs_per_block=5)


@pytest.fixture(scope="module")
def client(chain: BuiltChain) -> Iterator[Client]:
    service = LedgerService(chain)
    try:
        with ServerThread(service) as server:  # type: ignore[arg-type]
            yield Client(server.url)
    finally:
        service.close()


@pytest.fixture(scope="module")
def proof(chain: BuiltChain, client: Client) -> dict[str, Any]:
    return client.get_proof(chain.tx_hashes[2][3].hex())  # height 3, index 3


def test_served_proof_verifies(chain: BuiltChain, proof: dict[str, Any]) -> None:
    assert sorted(proof) == sorted(PROOF_FIELDS)
    result = verify_proof(proof, chain.genesis)
    assert (result.height, result.tx_index) == (3, 3)
    assert result.transaction.hash == chain.tx_hashes[2][3]
    assert result.receipt.ok and result.signatures == 4
    assert result.block_hash.hex() == proof["block_hash"]


def test_every_transaction_has_a_valid_proof(chain: BuiltChain, client: Client) -> None:
    codes = []
    for height, hashes in enumerate(chain.tx_hashes, start=1):
        for index, tx_hash in enumerate(hashes):
            result = verify_proof(client.get_proof(tx_hash.hex()), chain.genesis)
            assert (result.height, result.tx_index) == (height, index)
            codes.append(result.receipt.code)
    # Failed transactions are committed too, and their proofs show the failure.
    assert types.ErrorCode.MISSING_ROLE in codes and types.ErrorCode.BAD_ARGUMENTS in codes


def test_proof_from_the_ledger_equals_the_served_one(chain: BuiltChain, proof: dict[str, Any]) -> None:
    # The served ledger is open (locked) in the server: read a snapshot, as an auditor would.
    with open_ledger_snapshot(chain.data_dir) as ledger:
        assert compute_proof(ledger, 3, 3) == proof


def test_unknown_transaction_has_no_proof(client: Client) -> None:
    with pytest.raises(ClientError) as raised:
        client.get_proof("ab" * 32)
    assert raised.value.status == 404 and raised.value.code == "not_found"


def _expect_invalid(proof: dict[str, Any], chain: BuiltChain, what: str) -> str:
    try:
        verify_proof(proof, chain.genesis)
    except ProofError as error:
        return error.check
    raise AssertionError(f"a proof with {what} verified")


def test_any_altered_byte_fails(chain: BuiltChain, proof: dict[str, Any]) -> None:
    tried = 0
    paths = [(name, None) for name in HEX_FIELDS]
    for name in ("tx_proof", "receipt_proof"):
        paths += [(name, position) for position in range(len(proof[name]))]
    for name, position in paths:
        original = bytes.fromhex(proof[name] if position is None else proof[name][position])
        for offset in range(len(original)):
            for flip in (0x01, 0x80):
                altered = bytearray(original)
                altered[offset] ^= flip
                tampered = copy.deepcopy(proof)
                if position is None:
                    tampered[name] = altered.hex()
                else:
                    tampered[name][position] = altered.hex()
                _expect_invalid(tampered, chain, f"byte {offset} of {name} xor {flip}")
                tried += 1
    assert tried > 1500


def test_any_altered_hex_digit_or_number_fails(chain: BuiltChain, proof: dict[str, Any]) -> None:
    text = json.dumps(proof)
    checks = set()
    for name in HEX_FIELDS:
        value = proof[name]
        for position, digit in enumerate(value):
            # Upper case spells the same bytes, and is refused too: a proof has one spelling.
            replacement = digit.upper() if digit.isalpha() else "0123456789"[(int(digit) + 1) % 10]
            tampered = dict(proof, **{name: value[:position] + replacement + value[position + 1 :]})
            checks.add(_expect_invalid(tampered, chain, f"digit {position} of {name}"))
    for name in ("height", "tx_index", "tx_count", "version"):
        for delta in (-1, 1):
            checks.add(_expect_invalid(dict(proof, **{name: proof[name] + delta}), chain, f"{name}{delta:+}"))
    checks.add(_expect_invalid(dict(proof, chain_id="other-net"), chain, "another chain id"))
    checks.add(_expect_invalid(dict(proof, height=True), chain, "a boolean height"))
    checks.add(_expect_invalid({k: v for k, v in proof.items() if k != "receipt"}, chain, "a missing field"))
    checks.add(_expect_invalid(dict(proof, extra=1), chain, "an unknown field"))
    assert json.loads(text) == proof  # nothing above changed the original
    assert {"format", "decode", "certificate", "tx_inclusion", "height", "chain_id"} <= checks


def test_another_validator_set_fails(chain: BuiltChain, proof: dict[str, Any]) -> None:
    others = quorum.ValidatorSet(
        tuple(
            quorum.Validator(v.entity_id, crypto.SigningKey.generate().public_key)
            for v in chain.genesis.validators.validators
        )
    )
    with pytest.raises(ProofError) as raised:
        verify_proof(proof, dataclasses.replace(chain.genesis, validators=others))
    assert raised.value.check == "validator_set"


def test_verify_proof_command(chain: BuiltChain, proof: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    command = ("verify-proof", str(path), "--genesis", str(chain.genesis_path))
    valid = run_cli_process(*command)
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["valid"] is True
    altered = dict(proof, receipt_proof=list(reversed(proof["receipt_proof"])))
    path.write_text(json.dumps(altered))
    invalid = run_cli_process(*command)
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("error: invalid_proof: receipt_inclusion:"), invalid.stderr


def test_validator_sets_from_an_audit_checkpoint(chain: BuiltChain, proof: dict[str, Any]) -> None:
    from chainnode.tools.audit import Auditor, ReplayState, StateValidatorSets
    from chainnode.tools.export import LedgerSource

    with open_ledger_snapshot(chain.data_dir) as ledger:
        auditor = Auditor(chain.genesis, LedgerSource(ledger, "test"), workers=0, measure_baseline=False)
        assert auditor.run(height_to=3).ok
    checkpoint = auditor.compute_checkpoint()
    state = ReplayState(dict(checkpoint.state))
    result = verify_proof(proof, chain.genesis, StateValidatorSets(state, checkpoint.height))
    assert result.height == 3
    with pytest.raises(ProofError) as raised:  # the replayed state stops before the proof's height
        verify_proof(proof, chain.genesis, StateValidatorSets(state, 2))
    assert raised.value.check == "validator_set"
