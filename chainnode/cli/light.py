"""The `chainnode light` commands: a light client that follows a chain with its genesis file alone.

    chainnode light sync --node URL --genesis FILE --state DIR [--height H]
    chainnode light status --state DIR
    chainnode light verify-proof FILE --genesis FILE --state DIR [--node URL]

`sync` follows the chain header by header from the genesis (or from where DIR stopped), proving
every validator-set change on the way (`chainnode.sdk.light`); the node is trusted for nothing.
`verify-proof` checks an inclusion proof (`chainnode tx proof`) of any height the client has
reached, across any number of validator-set changes; with `--node` it first syncs up to the
proof's height.  Each prints one document (`chainnode.cli.output`); a refusal exits 1 with the
light client's check (`light_client: validator_set: ...`).  A fork seen during a sync is written
to DIR/evidence/ and halts the client: `sync` exits 1 and says where the evidence is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chainnode.cli.args import parse_positive_int
from chainnode.cli.output import add_output_options

EXIT_OK = 0
EXIT_FAILURE = 1


def _state_document(state: Any) -> dict[str, Any]:
    document: dict[str, Any] = state.to_json()
    return document


def run_sync(args: argparse.Namespace) -> int:
    from chainnode.app.genesis import load_genesis
    from chainnode.cli.output import emit, get_progress_sink
    from chainnode.light.store import LightStore
    from chainnode.sdk.client import Client
    from chainnode.sdk.light import sync_light_client

    progress = get_progress_sink(args)
    with Client(args.node, timeout_s=args.timeout) as client:
        result = sync_light_client(
            client,
            LightStore(args.state),
            load_genesis(args.genesis),
            height_max=args.height,
            on_page=lambda state: progress(f"verified up to height {state.height}"),
        )
    document = {**_state_document(result.state), "accepted": result.accepted}
    if result.evidence is not None:
        document["evidence"] = str(result.evidence)
    emit(args, document, title="light client")
    return EXIT_FAILURE if result.evidence is not None else EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    from chainnode.cli.output import emit
    from chainnode.core.errors import ConfigError
    from chainnode.light.store import LightStore

    state = LightStore(args.state).load()
    if state is None:
        raise ConfigError(f"{args.state} holds no light client; run `chainnode light sync` first")
    emit(args, _state_document(state), title="light client")
    return EXIT_OK


def run_verify_proof(args: argparse.Namespace) -> int:
    from chainnode.app.genesis import load_genesis
    from chainnode.app.proof import verify_proof_for_chain
    from chainnode.cli.audit import compute_proof_document, read_proof_file
    from chainnode.cli.output import emit
    from chainnode.core.errors import ConfigError
    from chainnode.light.store import LightStore

    proof = read_proof_file(args.file)
    genesis = load_genesis(args.genesis)
    store = LightStore(args.state)
    if args.node is not None:
        from chainnode.sdk.client import Client
        from chainnode.sdk.light import sync_light_client

        height = proof.get("height") if isinstance(proof, dict) else None
        with Client(args.node, timeout_s=args.timeout) as client:
            sync_light_client(client, store, genesis, height_max=height if isinstance(height, int) else None)
    state = store.load()
    if state is None:
        raise ConfigError(f"{args.state} holds no light client; run `chainnode light sync` first")
    if state.genesis_hash != genesis.compute_hash():
        raise ConfigError(f"{args.state} follows another chain than {args.genesis}")
    result = verify_proof_for_chain(proof, state.chain_id, state)
    document = {
        **compute_proof_document(result),
        "validator_set_hash": state.get_validator_set(result.height).compute_hash().hex(),
        "light_height": state.height,
    }
    emit(args, document, title="the proof is valid")
    return EXIT_OK


def _add_node_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--node", required=required, metavar="URL", help="a node's API URL (trusted for nothing)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per request (default 30)"
    )


def add_commands(commands: Any) -> None:
    """Mount `light` on the `chainnode` parser's subcommands."""
    parser = commands.add_parser("light", help="a light client: follow a chain by certified headers alone")
    light = parser.add_subparsers(dest="light_command", required=True, metavar="COMMAND")
    sync = light.add_parser("sync", help="follow the chain from the genesis (or where --state stopped)")
    _add_node_options(sync, required=True)
    sync.add_argument("--genesis", required=True, type=Path, metavar="FILE", help="the chain's genesis file")
    sync.add_argument("--state", required=True, type=Path, metavar="DIR", help="the light client's directory")
    sync.add_argument(
        "--height",
        type=parse_positive_int,
        metavar="H",
        help="stop at this height (default: the node's head)",
    )
    add_output_options(sync)
    sync.set_defaults(run=run_sync)
    status = light.add_parser("status", help="what the light client in --state trusts")
    status.add_argument(
        "--state", required=True, type=Path, metavar="DIR", help="the light client's directory"
    )
    add_output_options(status)
    status.set_defaults(run=run_status)
    verify = light.add_parser(
        "verify-proof", help="verify an inclusion proof of any height the client reached"
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="a proof from `chainnode tx proof`")
    verify.add_argument(
        "--genesis", required=True, type=Path, metavar="FILE", help="the chain's genesis file"
    )
    verify.add_argument(
        "--state", required=True, type=Path, metavar="DIR", help="the light client's directory"
    )
    _add_node_options(verify, required=False)
    add_output_options(verify)
    verify.set_defaults(run=run_verify_proof)
