"""Records for data sharing end to end over a real API, LevelDB and the `chainnode records` CLI:
a hospital anchors a document and grants a university write over a prefix; the university writes;
history shows the writer; an expired or revoked grant refuses the next write; verify finds the file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from chainnode.core import crypto, identity, identity_records, quorum
from chainnode.core.errors import ChainError
from chainnode.sdk.client import Client, Identity
from chainnode.sdk.records import Records, compute_file_digest
from tests.factories import create_pki
from tests.integration.api_harness import LocalService, ServerThread

ZONE = "beijing"
HOSPITAL = "pku-hospital-3"
UNIVERSITY = "tsinghua"
CLINIC = "chaoyang-clinic"
SECTORS = {HOSPITAL: ("health",), UNIVERSITY: ("education",), CLINIC: ("health",)}


class SharingService(LocalService):
    """`LocalService` over a genesis with a hospital, a university and a clinic."""

    def __init__(self, directory: Path) -> None:
        pki = create_pki("Records Test Network", ((ZONE, "Beijing"),))
        state: dict[bytes, bytes] = {}
        for entity_id, sectors in SECTORS.items():
            claims = identity.EntityClaims(entity_id, ZONE, ("submitter",), sectors, entity_id.title())
            certificate, key = pki.issue(claims)
            folder = directory / "entities" / entity_id
            folder.mkdir(parents=True)
            (folder / "cert.pem").write_bytes(identity.certificate_to_pem(certificate))
            (folder / "key.pem").write_bytes(key.to_pem())
            state[identity_records.entity_key(entity_id)] = identity.entity_record_from_certificate(
                certificate
            ).encode()
        validator_keys = [crypto.SigningKey.generate() for _ in range(4)]
        validators = quorum.ValidatorSet(
            tuple(
                quorum.Validator(f"validator-{i + 1:02d}", key.public_key)
                for i, key in enumerate(validator_keys)
            )
        )
        state[identity_records.VALIDATOR_SET_KEY] = validators.encode()
        state[identity_records.zone_key(ZONE)] = identity_records.ZoneRecord(
            ZONE, "Beijing", identity.certificate_der(pki.zones[ZONE]), True
        ).encode()
        self.open_chain(
            directory,
            chain_id="records-net",
            validator_keys=validator_keys,
            validators=validators,
            genesis_hash=crypto.hash_tagged("genesis", b"records test genesis"),
            genesis_time_ms=time.time_ns() // 1_000_000 - 1000,
            initial_state=state,
            mempool_capacity_txs=1000,
            mempool_capacity_bytes=16 * 1024 * 1024,
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    service = SharingService(tmp_path / "node")
    try:
        with ServerThread(service, commit_interval_ms=20) as running:
            yield running
    finally:
        service.close()


def _identity(server: ServerThread, entity_id: str) -> str:
    return str(server.service.directory / "entities" / entity_id)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """`chainnode records ...` in this process: exit code, parsed JSON output (or text), stderr."""
    code = cli.main(["records", *argv])
    output = capsys.readouterr()
    try:
        return code, json.loads(output.out), output.err
    except ValueError:
        return code, output.out, output.err


def _write(server: ServerThread, entity_id: str, *argv: str) -> list[str]:
    return [*argv, "--identity", _identity(server, entity_id), "--node", server.url, "--wait", "--json"]


def test_hospital_shares_with_a_university(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = ["--node", server.url]
    document = tmp_path / "discharge-2026-001.pdf"
    document.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)

    # The hospital anchors the document's hash.
    code, anchored, err = _run(
        capsys,
        "anchor",
        str(document),
        *_write(server, HOSPITAL, "--key", "discharge-2026-001", "--uri", "https://files.pku-h3.example/d1"),
    )
    assert code == 0, err
    assert anchored["receipt"]["events"][0]["name"] == "records.anchored"

    # It grants the university write over the trial's prefix; the university writes.
    code, _, err = _run(
        capsys,
        "grant",
        *_write(server, HOSPITAL, "--grantee", UNIVERSITY, "--prefix", "trial-7.", "--right", "write"),
    )
    assert code == 0, err
    code, written, err = _run(
        capsys,
        "put",
        *_write(
            server, UNIVERSITY, "--owner", HOSPITAL, "--key", "trial-7.enrolment", "--value", "42 enrolled"
        ),
    )
    assert code == 0, err
    assert written["action"] == "records.put_to"

    # History shows who wrote each version.
    code, _, err = _run(
        capsys, "put", *_write(server, HOSPITAL, "--key", "trial-7.enrolment", "--value", "43")
    )
    assert code == 0, err
    code, history, _ = _run(
        capsys, "history", *node, "--entity", HOSPITAL, "--key", "trial-7.enrolment", "--json"
    )
    assert code == 0
    assert [(item["version"], item["writer"], item["value"]) for item in history["items"]] == [
        (1, UNIVERSITY, "42 enrolled"),
        (2, HOSPITAL, "43"),
    ]
    assert history["items"][0]["tx_hash"] == written["tx_hash"]
    code, table, _ = _run(
        capsys, "history", *node, "--entity", HOSPITAL, "--key", "trial-7.enrolment", "--text"
    )
    assert code == 0 and table.splitlines()[0].split() == ["VERSION", "HEIGHT", "WRITER", "TX", "VALUE"]
    assert UNIVERSITY in table.splitlines()[1]
    code, table, _ = _run(
        capsys, "list", *node, "--entity", HOSPITAL, "--prefix", "trial-7.", "--limit", "1", "--text"
    )
    assert code == 0 and "trial-7.enrolment" in table and "(more: --cursor trial-7.enrolment)" in table
    code, text, _ = _run(capsys, "get", *node, "--entity", HOSPITAL, "--key", "discharge-2026-001", "--text")
    assert code == 0 and "document sha256=" in text and "application/pdf" in text

    # Outside the prefix: no grant.
    code, _, err = _run(
        capsys, "put", *_write(server, UNIVERSITY, "--owner", HOSPITAL, "--key", "payroll", "--value", "x")
    )
    assert code == 1 and "error: no_grant:" in err

    # Revoked: the next write is refused with its code.
    code, _, err = _run(
        capsys, "revoke", *_write(server, HOSPITAL, "--grantee", UNIVERSITY, "--prefix", "trial-7.")
    )
    assert code == 0, err
    code, _, err = _run(
        capsys,
        "put",
        *_write(server, UNIVERSITY, "--owner", HOSPITAL, "--key", "trial-7.enrolment", "--value", "44"),
    )
    assert code == 1 and "error: grant_revoked:" in err

    # Expired: a grant that ends at the height of its own block refuses the write after it.
    height = int(Client(server.url).get_status()["height"])
    code, _, err = _run(
        capsys,
        "grant",
        *_write(server, HOSPITAL, "--grantee", UNIVERSITY, "--prefix", "lab.", "--right", "write"),
        "--expires-at",
        str(height + 1),
    )
    assert code == 0, err
    code, _, err = _run(
        capsys,
        "put",
        *_write(server, UNIVERSITY, "--owner", HOSPITAL, "--key", "lab.results", "--value", "x"),
    )
    assert code == 1 and "error: grant_expired:" in err

    code, grants, _ = _run(capsys, "grants", *node, "--entity", HOSPITAL, "--json")
    assert code == 0
    assert {(g["prefix"], g["status"]) for g in grants["grants"]} == {
        ("trial-7.", "revoked"),
        ("lab.", "expired"),
    }

    # Verify finds the file, where and when it was anchored; a changed copy is not anchored.
    code, verified, err = _run(
        capsys, "verify", str(document), *node, "--entity", HOSPITAL, "--key", "discharge-2026-001", "--json"
    )
    assert code == 0, err
    (anchor,) = verified["anchors"]
    assert (anchor["version"], anchor["height"], anchor["tx_hash"]) == (
        1,
        anchored["height"],
        anchored["tx_hash"],
    )
    assert anchor["document"]["media_type"] == "application/pdf"
    assert anchor["document"]["size"] == document.stat().st_size
    changed = tmp_path / "changed.pdf"
    changed.write_bytes(document.read_bytes() + b"\n")
    code, text, err = _run(
        capsys, "verify", str(changed), *node, "--entity", HOSPITAL, "--key", "discharge-2026-001"
    )
    assert code == 1 and "error: not_anchored:" in err
    code, text, err = _run(
        capsys, "verify", str(document), *node, "--entity", HOSPITAL, "--key", "discharge-2026-001", "--text"
    )
    assert (
        code == 0
        and re.search(  # the anchors' table: version, height, tx
            rf"anchored in {HOSPITAL}/discharge-2026-001 *\n.*\n"
            rf"1\s+{anchored['height']}\s+{anchored['tx_hash'][:12]}",
            text,
        )
    ), text


def test_sdk_sector_grant_read_markers_and_pages(server: ServerThread, tmp_path: Path) -> None:
    client = Client(server.url)
    hospital = Records(client, Identity.load(Path(_identity(server, HOSPITAL))))
    clinic = Records(client, Identity.load(Path(_identity(server, CLINIC))))
    hospital.grant("sector:health", "referral-", "write", 10_000, wait=True)
    for number in range(5):
        clinic.put_to(HOSPITAL, f"referral-{number}", f"patient {number}".encode(), wait=True)
    first = hospital.list_records(HOSPITAL, "referral-", limit=2)
    assert [item["key"] for item in first["items"]] == ["referral-0", "referral-1"]
    assert first["next_cursor"] == "referral-1"
    every = list(hospital.iter_records(HOSPITAL, "referral-", page_size=2))
    assert [item["key"] for item in every] == [f"referral-{n}" for n in range(5)]
    assert {item["writer"] for item in every} == {CLINIC}

    clinic.mark_read(HOSPITAL, "referral-3", 1, wait=True)
    (read,) = hospital.reads(HOSPITAL, "referral-3")
    assert (read["reader"], read["version"]) == (CLINIC, 1)
    # Grants and read markers page by key: the cursor is the last grant or reader seen.
    hospital.grant(CLINIC, "notes-", "read-marker", 10_000, wait=True)
    hospital.grant(CLINIC, "lab-", "write", 10_000, wait=True)
    hospital.mark_read(HOSPITAL, "referral-3", 1, wait=True)
    grants, cursor, cursors = [], "", []
    for _ in range(5):
        page = client.send("GET", f"/v1/grants/{HOSPITAL}?limit=1&cursor={cursor}").value
        grants.extend((grant["grantee"], grant["prefix"]) for grant in page["grants"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    assert grants == [(CLINIC, "lab-"), (CLINIC, "notes-"), ("sector:health", "referral-")]
    assert cursors == [f"{CLINIC}/lab-", f"{CLINIC}/notes-"]
    assert [(grant["grantee"], grant["prefix"]) for grant in hospital.grants(HOSPITAL)] == grants
    first = client.send("GET", f"/v1/records/{HOSPITAL}/referral-3/reads?limit=1").value
    readers = sorted([CLINIC, HOSPITAL])
    assert [item["reader"] for item in first["reads"]] == readers[:1] and first["next_cursor"] == readers[0]
    rest = client.send("GET", f"/v1/records/{HOSPITAL}/referral-3/reads?limit=1&cursor={readers[0]}").value
    assert [item["reader"] for item in rest["reads"]] == readers[1:] and rest["next_cursor"] is None

    note = tmp_path / "note.txt"
    note.write_text("consent form signed\n")
    digest = compute_file_digest(note)
    assert digest.media_type == "text/plain"
    hospital.anchor("consent-9", digest, wait=True)
    assert hospital.verify_file(note, HOSPITAL, "consent-9").is_anchored
    # Anchors page by version: the cursor is the last version seen.
    hospital.put("consent-9", b"a value between the anchors", wait=True)
    hospital.anchor("consent-9", digest, wait=True)
    path = f"/v1/records/{HOSPITAL}/consent-9/anchors?sha256={digest.sha256.hex()}&limit=1"
    first = client.send("GET", path).value
    assert [item["version"] for item in first["anchors"]] == [1] and first["next_cursor"] == "1"
    rest = client.send("GET", path + "&cursor=1").value
    assert [item["version"] for item in rest["anchors"]] == [3] and rest["next_cursor"] is None
    assert [item["version"] for item in hospital.find_anchors(HOSPITAL, "consent-9", digest.sha256)] == [1, 3]
    assert not hospital.verify_file(note, HOSPITAL, "referral-3").is_anchored


def test_confidential_value_opens_for_its_recipients_only(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    node = ["--node", server.url]
    code, _, err = _run(
        capsys,
        "put",
        *_write(
            server,
            HOSPITAL,
            "--key",
            "diagnosis-42",
            "--value",
            "HbA1c 6.1%",
            "--confidential-to",
            UNIVERSITY,
        ),
    )
    assert code == 0, err
    code, stored, _ = _run(capsys, "get", *node, "--entity", HOSPITAL, "--key", "diagnosis-42", "--json")
    assert code == 0 and "HbA1c" not in json.dumps(stored)
    assert bytes.fromhex(stored["value_hex"]).find(b"HbA1c") == -1
    for reader in (HOSPITAL, UNIVERSITY):
        code, opened, err = _run(
            capsys,
            "get",
            *node,
            "--entity",
            HOSPITAL,
            "--key",
            "diagnosis-42",
            "--decrypt",
            "--identity",
            _identity(server, reader),
            "--json",
        )
        assert code == 0, err
        assert (opened["value"], opened["sealed_to"]) == ("HbA1c 6.1%", sorted([UNIVERSITY, HOSPITAL]))
    code, _, err = _run(
        capsys,
        "get",
        *node,
        "--entity",
        HOSPITAL,
        "--key",
        "diagnosis-42",
        "--decrypt",
        "--identity",
        _identity(server, CLINIC),
    )
    assert code == 1 and "error: not_a_recipient:" in err
    clinic = Records(Client(server.url), Identity.load(Path(_identity(server, CLINIC))))
    university = Records(Client(server.url), Identity.load(Path(_identity(server, UNIVERSITY))))
    hospital = Records(Client(server.url), Identity.load(Path(_identity(server, HOSPITAL))))
    hospital.put_confidential("diagnosis-43", b"negative", [CLINIC], wait=True)
    assert clinic.get_confidential(HOSPITAL, "diagnosis-43") == b"negative"
    with pytest.raises(ChainError) as caught:
        university.get_confidential(HOSPITAL, "diagnosis-43")
    assert caught.value.code == "not_a_recipient"
    with pytest.raises(ChainError) as unknown:
        hospital.put_confidential("diagnosis-44", b"x", ["nobody"])
    assert unknown.value.code == "unknown_entity"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/v1/records/{HOSPITAL}?limit=0", 400, "bad_limit"),
        (f"/v1/records/{HOSPITAL}?limit=1001", 400, "bad_limit"),
        (f"/v1/records/{HOSPITAL}?prefix=a/b", 400, "bad_request"),
        (f"/v1/records/{HOSPITAL}?cursor=" + "k" * 129, 400, "bad_cursor"),
        (f"/v1/records/{HOSPITAL}/k/history?cursor=x", 400, "bad_cursor"),
        (f"/v1/records/{HOSPITAL}/k/anchors?sha256=abcd", 400, "bad_hex"),
        (f"/v1/records/{HOSPITAL}/k/anchors", 400, "bad_hex"),
        (f"/v1/records/{HOSPITAL}/k?version=0", 400, "bad_version"),
        (f"/v1/records/{HOSPITAL}/missing", 404, "not_found"),
        (f"/v1/grants/{HOSPITAL}?cursor=5", 400, "bad_cursor"),
        (f"/v1/grants/{HOSPITAL}?cursor=a/b/c", 400, "bad_cursor"),
        (f"/v1/records/{HOSPITAL}/k/reads?cursor=Not-An-Id", 400, "bad_cursor"),
    ],
)
def test_bad_queries_have_stable_codes(server: ServerThread, path: str, status: int, code: str) -> None:
    with pytest.raises(ChainError) as caught:
        Client(server.url).send("GET", path)
    assert (getattr(caught.value, "status", None), caught.value.code) == (status, code)


def test_empty_answers(server: ServerThread) -> None:
    records = Records(Client(server.url))
    assert records.list_records(HOSPITAL) == {"items": [], "next_cursor": None}
    assert records.history(HOSPITAL, "nothing") == {"items": [], "next_cursor": None}
    assert records.grants(HOSPITAL) == []
    assert records.find_anchors(HOSPITAL, "nothing", b"\x00" * 32) == []
