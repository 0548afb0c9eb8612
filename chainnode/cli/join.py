"""`chainnode network add-observer`: a read-only node joins a running network (`chainnode.tools.join`).

    chainnode network add-observer DIR --node NAME=HOST:P2P_PORT:API_PORT --zone ZONE
                                   [--register URL] [--data-dir PATH] [--json|--text]

Run where the zone authority keeps `DIR/zones/ZONE/` (its CA key issues the node's certificate).
It writes `DIR/nodes/NAME/` (key, certificate, chain, node.toml dialing every node of
`DIR/network.json`) and adds the node to `network.json`.  With `--register URL` the zone
authority also registers the certificate on chain through that node's API and waits for the
commit; without it, the document says the command to run.  Then start the node with
`chainnode node run --config DIR/nodes/NAME/node.toml`: no other node changes or restarts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chainnode.cli.output import add_output_options

EXIT_OK = 0


def run_add_observer(args: argparse.Namespace) -> int:
    from chainnode.cli.output import emit
    from chainnode.tools import join

    joined = join.add_observer(args.dir, args.node, zone=args.zone, data_dir=args.data_dir)
    zone_dir = args.dir.resolve() / "zones" / joined.zone
    register = (
        f"chainnode authority register --zone-dir {zone_dir} --cert {joined.certificate_path} "
        "--node URL --wait"
    )
    document: dict[str, Any] = {
        "node_id": joined.node_id,
        "zone": joined.zone,
        "config": str(joined.config_path),
        "certificate": str(joined.certificate_path),
        "api_url": joined.api_url,
        "p2p_address": joined.p2p_address,
        "registered": None,
        "next": [] if args.register else [register],
    }
    if args.register:
        document["registered"] = _register(zone_dir, joined.certificate_path, args.register)
    document["next"].append(f"chainnode node run --config {joined.config_path}")
    emit(args, document, title=f"observer {joined.node_id} written")
    return EXIT_OK


def _register(zone_dir: Path, certificate_path: Path, url: str) -> dict[str, Any]:
    """Submit the zone authority's `authority.register` of the certificate and wait for it."""
    from chainnode.core import identity
    from chainnode.sdk.client import AuthoritySigner, Client, build_transaction
    from chainnode.sdk.errors import ClientError

    signer = AuthoritySigner.load_zone(zone_dir)
    certificate = identity.certificate_der(identity.load_certificate(certificate_path))
    with Client(url, timeout_s=30.0) as client:
        status = client.get_status()
        tx = build_transaction(
            signer,
            chain_id=str(status["chain_id"]),
            module="authority",
            action="register",
            args=(certificate,),
            valid_until=int(status["height"]) + 100,
        )
        tx_hash = client.submit(tx)
        status = client.wait_for_commit(tx_hash, timeout_s=60.0)
    receipt = status.get("receipt") or {}
    if receipt.get("code") != 0:
        raise ClientError(
            f"the registration failed: {receipt.get('message')}",
            code=str(receipt.get("code_label", "failed")),
        )
    return {"tx_hash": tx_hash, "height": status.get("height")}


def add_network_commands(network_commands: Any) -> None:
    """Mount `add-observer` on the `chainnode network` subcommands."""
    parser = network_commands.add_parser(
        "add-observer", help="write a read-only node that joins the running network (and register it)"
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the network directory (`network init --out`)")
    parser.add_argument(
        "--node",
        required=True,
        metavar="NAME=HOST:P2P_PORT:API_PORT",
        help="the node's name and the addresses it advertises (append ' listen=HOST' to bind another)",
    )
    parser.add_argument("--zone", required=True, metavar="ZONE", help="the zone whose authority issues it")
    parser.add_argument(
        "--register",
        metavar="URL",
        help="also register its certificate on chain through this node's API and wait for the commit",
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        metavar="PATH",
        help="its data directory, relative to node.toml (default data)",
    )
    add_output_options(parser)
    parser.set_defaults(run=run_add_observer)
