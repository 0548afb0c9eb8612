"""The `chainnode authority ...` and `chainnode council ...` commands.

Theory of operation: like `cli.py`, only the standard library is imported at start-up (and the
plain enums of `chainnode.core.statuses`, for the choices of `--status`) and each command imports
what it needs when it runs.  `cli.py` mounts the commands with `add_commands`
and runs `args.check(args)` (usage checks, exit 2) before `args.run(args)`.

    chainnode authority issue --zone-dir DIR/zones/<z> --entity ID --name NAME
                              --roles R[,R] --sectors S[,S] --out DIR [--valid-days N] [--key PEM]
    chainnode authority register|renew --zone-dir DIR/zones/<z> --cert PEM --node URL [--wait]
    chainnode authority revoke --zone-dir DIR/zones/<z> --entity ID --reason TEXT --node URL [--wait]
    chainnode council propose --member-dir DIR/council/<m> --node URL --kind KIND [--expires-in N]
                              [--zone-cert PEM --name NAME | --zone ID | --entity ID | --param K=V ...
                               | --genesis FILE (register_chain) | --chain ID (remove_chain)]
    chainnode council vote --member-dir DIR/council/<m> --node URL --proposal N (--approve|--reject)
    chainnode council list --node URL [--status open|expired|executed|rejected|failed]

`authority issue` works offline: the zone authority signs a certificate for one of its own
entities (a new key, or `--key` to keep an existing one for a renewal) and writes `cert.pem`,
`key.pem` (mode 0600) and `chain.pem` into `--out`.  The other commands sign a transaction as
`zone:<zone>` or `council:<member>` and submit it; `--wait` waits for the commit and fails when
the transaction's receipt reports a failure.  Each prints one document (`chainnode.cli.output`):
`tx_hash` and the outcome; `council propose|vote` add `proposal_id` and, once committed, the
proposal's votes so far and the approvals it needs (read back from the node).  A proposal
expires `--expires-in` blocks (default 1000) after the node's current height.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from chainnode.cli.args import parse_positive_int, raise_if_failed, submit_document, wait_for_outcome
from chainnode.cli.output import add_output_options, emit
from chainnode.core.statuses import ProposalStatus

VALID_FOR_BLOCKS = 1000
# The CLI keeps its own copy so `chainnode --help` need not import the state machine;
# tests/unit/test_governance.py checks that it equals `chainnode.app.governance.PROPOSAL_KINDS`.
PROPOSAL_KINDS = (
    "admit_zone",
    "suspend_zone",
    "reinstate_zone",
    "remove_zone",
    "add_validator",
    "remove_validator",
    "set_params",
    "register_chain",
    "remove_chain",
)
_ZONE_KINDS = ("suspend_zone", "reinstate_zone", "remove_zone")
_VALIDATOR_KINDS = ("add_validator", "remove_validator")


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({item.strip() for item in text.split(",") if item.strip()}))


def _write_file(path: Path, data: bytes, *, private: bool = False) -> None:
    mode = 0o600 if private else 0o644
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, mode)


# ---------------------------------------------------------------- running


def run_issue(args: argparse.Namespace) -> int:
    from chainnode.core import crypto, identity
    from chainnode.core.errors import ConfigError

    zone_certificate = identity.load_certificate(args.zone_dir / "ca.pem")
    zone_key = crypto.SigningKey.load(args.zone_dir / "ca.key.pem")
    key = crypto.SigningKey.load(args.key) if args.key is not None else crypto.SigningKey.generate()
    claims = identity.EntityClaims(
        entity_id=args.entity,
        zone=identity.read_zone_id(zone_certificate),
        roles=_names(args.roles),
        sectors=_names(args.sectors),
        name=args.name,
    )
    certificate = identity.issue_entity_certificate(
        zone_certificate, zone_key, claims, key.public_key, valid_days=args.valid_days
    )
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        certificate_pem = identity.certificate_to_pem(certificate)
        _write_file(out / "cert.pem", certificate_pem)
        _write_file(out / "chain.pem", certificate_pem + identity.certificate_to_pem(zone_certificate))
        _write_file(out / "key.pem", key.to_pem(), private=True)
    except OSError as error:
        raise ConfigError(f"cannot write the identity to {out}: {error}") from error
    not_before_ms, not_after_ms = identity.get_validity_ms(certificate)
    emit(
        args,
        {
            "entity": claims.entity_id,
            "zone": claims.zone,
            "roles": list(claims.roles),
            "sectors": list(claims.sectors),
            "not_before_ms": not_before_ms,
            "not_after_ms": not_after_ms,
            "public_key": key.public_key.hex(),
            "out": str(out),
        },
        title=f"certificate issued, written to {out}",
    )
    return 0


def _submit(
    args: argparse.Namespace, signer: Any, module: str, action: str, call_args: tuple[Any, ...]
) -> dict[str, Any]:
    """Sign as `signer` and submit to `--node`; with `--wait`, the document with the outcome."""
    from chainnode.sdk.client import Client, build_transaction

    client = Client(args.node, timeout_s=args.timeout)
    status = client.get_status()
    tx = build_transaction(
        signer,
        chain_id=str(status["chain_id"]),
        module=module,
        action=action,
        args=call_args,
        valid_until=int(status["height"]) + VALID_FOR_BLOCKS,
    )
    document = submit_document(client.submit(tx), f"{module}.{action}", tx.signer)
    if args.wait:
        document = wait_for_outcome(args, client, document)
    return document


def _report(args: argparse.Namespace, document: dict[str, Any]) -> int:
    emit(args, document, render=_render_submitted)
    raise_if_failed(document)
    return 0


def _render_submitted(document: dict[str, Any]) -> None:
    from chainnode.cli.output import print_note, render_document

    render_document(document, title=str(document["action"]))
    proposal = document.get("proposal")
    if proposal is not None:
        print_note(
            f"proposal {proposal['id']} ({proposal['kind']} {proposal['payload']}): {proposal['status']}, "
            f"{proposal['approvals']} of {proposal['threshold']} approvals needed "
            f"(council of {proposal['council']}), {proposal['rejections']} rejections"
        )
    elif document.get("status") == "pending":
        print_note("pending: --wait waits for the commit and prints the outcome")


def _add_votes(args: argparse.Namespace, document: dict[str, Any], proposal_id: int | None) -> None:
    """`proposal_id` and, once committed, the proposal's votes so far and the votes it needs."""
    from chainnode.sdk.client import Client

    document["proposal_id"] = proposal_id
    document["proposal"] = None
    if proposal_id is None or document["status"] != "committed":
        return
    client = Client(args.node, timeout_s=args.timeout)
    proposal = client.get_proposal(proposal_id)
    listing = client.get_proposals()
    if proposal is not None:
        document["proposal"] = {
            "id": proposal_id,
            "kind": proposal["kind"],
            "payload": proposal["payload"],
            "status": proposal["status"],
            "approvals": len(proposal["approvals"]),
            "rejections": len(proposal["rejections"]),
            "threshold": listing.get("threshold"),
            "council": len(listing.get("council", [])),
            "outcome": proposal.get("outcome"),
        }


def _find_proposal_id(document: dict[str, Any]) -> int | None:
    """The id a committed `governance.propose` assigned (its `governance.proposed` event)."""
    for event in (document.get("receipt") or {}).get("events", []):
        if event.get("name") == "governance.proposed" and event.get("attributes"):
            return int(event["attributes"][0])
    return None


def run_authority(args: argparse.Namespace) -> int:
    from chainnode.core import identity
    from chainnode.sdk.client import AuthoritySigner

    signer = AuthoritySigner.load_zone(args.zone_dir)
    if args.authority_command == "revoke":
        return _report(args, _submit(args, signer, "authority", "revoke", (args.entity, args.reason)))
    certificate = identity.certificate_der(identity.load_certificate(args.cert))
    return _report(args, _submit(args, signer, "authority", args.authority_command, (certificate,)))


def _compute_payload(args: argparse.Namespace) -> tuple[Any, ...]:
    from chainnode.core import identity

    if args.kind == "admit_zone":
        return (identity.certificate_der(identity.load_certificate(args.zone_cert)), args.name)
    if args.kind in _ZONE_KINDS:
        return (args.zone,)
    if args.kind in _VALIDATOR_KINDS:
        return (args.entity,)
    if args.kind == "register_chain":
        from chainnode.app.genesis import load_genesis
        from chainnode.app.xchain_registry import compute_register_chain_payload

        return compute_register_chain_payload(load_genesis(args.genesis))
    if args.kind == "remove_chain":
        return (args.chain,)
    pairs = []
    for item in args.param:
        name, _, value = item.partition("=")
        pairs.append((name.strip(), int(value)))
    return (tuple(pairs),)


def run_propose(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import AuthoritySigner, Client

    signer = AuthoritySigner.load_council(args.member_dir, args.member)
    height = int(Client(args.node, timeout_s=args.timeout).get_status()["height"])
    payload = _compute_payload(args)
    document = _submit(
        args, signer, "governance", "propose", (args.kind, payload, height + 1 + args.expires_in)
    )
    _add_votes(args, document, _find_proposal_id(document))
    return _report(args, document)


def run_vote(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import AuthoritySigner

    signer = AuthoritySigner.load_council(args.member_dir, args.member)
    document = _submit(args, signer, "governance", "vote", (args.proposal, bool(args.approve)))
    _add_votes(args, document, args.proposal)
    return _report(args, document)


def run_list(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import Client

    listing = Client(args.node, timeout_s=args.timeout).get_proposals(args.status)
    emit(args, listing, render=_render_proposals)
    return 0


def _render_proposals(listing: dict[str, Any]) -> None:
    from chainnode.cli.output import print_note, print_rows

    council = listing.get("council", [])
    print_note(f"council of {len(council)}; a proposal executes at {listing.get('threshold')} approvals")
    rows = [
        {
            **{name: item.get(name) for name in ("id", "kind", "payload", "status", "proposer")},
            "votes": f"{len(item['approvals'])}/{listing.get('threshold')} yes, {len(item['rejections'])} no",
            "expires_at_height": item.get("expires_at_height"),
        }
        for item in listing.get("proposals", [])
    ]
    print_rows(rows, ["id", "kind", "payload", "status", "votes", "proposer", "expires_at_height"])


# ---------------------------------------------------------------- usage checks


def check_propose(args: argparse.Namespace) -> None:
    """Each kind needs its own options, and only those: a usage error (exit 2) otherwise."""
    parser: argparse.ArgumentParser = args.parser
    needed = {
        "admit_zone": ("zone_cert", "name"),
        "set_params": ("param",),
        **{kind: ("zone",) for kind in _ZONE_KINDS},
        **{kind: ("entity",) for kind in _VALIDATOR_KINDS},
        "register_chain": ("genesis",),
        "remove_chain": ("chain",),
    }[args.kind]
    for option in ("zone_cert", "name", "zone", "entity", "param", "genesis", "chain"):
        given = bool(getattr(args, option))
        if given != (option in needed):
            flag = "--" + option.replace("_", "-")
            parser.error(f"--kind {args.kind} {'needs' if option in needed else 'does not take'} {flag}")
    for item in args.param or ():
        name, separator, value = item.partition("=")
        if not separator or not name.strip() or not value.strip().isdigit():
            parser.error(f"--param takes NAME=INTEGER, got {item!r}")


# ---------------------------------------------------------------- the parser


def _add_submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per answer and commit"
    )
    parser.add_argument("--wait", action="store_true", help="wait for the commit; fail if the receipt failed")
    add_output_options(parser)


def _add_authority_commands(commands: Any) -> None:
    authority = commands.add_parser("authority", help="zone authority operations")
    subcommands = authority.add_subparsers(dest="authority_command", required=True)
    issue = subcommands.add_parser("issue", help="issue an entity certificate offline")
    issue.add_argument("--zone-dir", type=Path, required=True, metavar="DIR", help="holds ca.pem, ca.key.pem")
    issue.add_argument("--entity", required=True, metavar="ID", help="the new entity's id")
    issue.add_argument("--name", required=True, metavar="NAME", help="the entity's display name")
    issue.add_argument("--roles", required=True, metavar="R[,R]", help="e.g. submitter,issuer")
    issue.add_argument("--sectors", required=True, metavar="S[,S]", help="e.g. education,law")
    issue.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="writes cert.pem, key.pem, chain.pem"
    )
    issue.add_argument("--valid-days", type=parse_positive_int, default=365, metavar="N", help="validity")
    add_output_options(issue)
    issue.add_argument("--key", type=Path, default=None, metavar="PEM", help="keep this key (renewal)")
    issue.set_defaults(run=run_issue)
    for action, help_text in (
        ("register", "register a new entity"),
        ("renew", "renew an entity's certificate"),
    ):
        parser = subcommands.add_parser(action, help=help_text)
        parser.add_argument(
            "--zone-dir", type=Path, required=True, metavar="DIR", help="holds ca.pem, ca.key.pem"
        )
        parser.add_argument("--cert", type=Path, required=True, metavar="PEM", help="the entity's cert.pem")
        _add_submit_options(parser)
        parser.set_defaults(run=run_authority)
    revoke = subcommands.add_parser("revoke", help="revoke an entity's certificate from the next block")
    revoke.add_argument(
        "--zone-dir", type=Path, required=True, metavar="DIR", help="holds ca.pem, ca.key.pem"
    )
    revoke.add_argument("--entity", required=True, metavar="ID", help="the entity to revoke")
    revoke.add_argument("--reason", required=True, metavar="TEXT", help="recorded on chain")
    _add_submit_options(revoke)
    revoke.set_defaults(run=run_authority)


def _add_council_commands(commands: Any) -> None:
    council = commands.add_parser("council", help="council proposals and votes")
    subcommands = council.add_subparsers(dest="council_command", required=True)
    propose = subcommands.add_parser("propose", help="propose a change (counts as your approval)")
    vote = subcommands.add_parser("vote", help="approve or reject a proposal")
    for parser in (propose, vote):
        parser.add_argument("--member-dir", type=Path, required=True, metavar="DIR", help="holds key.pem")
        parser.add_argument("--member", default=None, metavar="ID", help="default: the directory's name")
        _add_submit_options(parser)
    propose.add_argument("--kind", required=True, choices=PROPOSAL_KINDS, help="what the proposal changes")
    propose.add_argument(
        "--expires-in",
        type=parse_positive_int,
        default=1000,
        metavar="BLOCKS",
        help="open for this many blocks",
    )
    propose.add_argument(
        "--zone-cert", type=Path, default=None, metavar="PEM", help="admit_zone: the zone CA"
    )
    propose.add_argument("--name", default=None, metavar="NAME", help="admit_zone: the zone's display name")
    propose.add_argument("--zone", default=None, metavar="ID", help="suspend/reinstate/remove_zone")
    propose.add_argument("--entity", default=None, metavar="ID", help="add/remove_validator")
    propose.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="set_params")
    propose.add_argument(
        "--genesis",
        type=Path,
        default=None,
        metavar="FILE",
        help="register_chain: the counterparty's genesis",
    )
    propose.add_argument(
        "--chain", default=None, metavar="ID", help="remove_chain: the counterparty's chain id"
    )
    propose.set_defaults(run=run_propose, check=check_propose, parser=propose)
    vote.add_argument(
        "--proposal", type=parse_positive_int, required=True, metavar="N", help="the proposal's id"
    )
    choice = vote.add_mutually_exclusive_group(required=True)
    choice.add_argument("--approve", action="store_true", help="vote for")
    choice.add_argument("--reject", action="store_true", help="vote against")
    vote.set_defaults(run=run_vote)
    listing = subcommands.add_parser("list", help="list proposals, newest first")
    listing.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    listing.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per answer")
    listing.add_argument(
        "--status", default=None, choices=[str(status) for status in ProposalStatus], help="default: all"
    )
    add_output_options(listing)
    listing.set_defaults(run=run_list)


def add_commands(commands: Any) -> None:
    """Mount `authority` and `council` on the `chainnode` parser's subcommands."""
    _add_authority_commands(commands)
    _add_council_commands(commands)
