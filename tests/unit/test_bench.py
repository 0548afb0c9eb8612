"""The benchmark's pure figures and its readers of /proc, on real inputs; its workload mixes,
and the pilot and realistic mixes' set-up and timed transactions executed by the real `Executor`
in shuffled orders over a real pilot network's genesis state, every receipt a success; the
submitter's stop rule for `--duration` (an injected clock) and the `bench` command's options."""

from __future__ import annotations

import argparse
import array
import itertools
import math
import os
import random
import types as types_module
from collections import Counter
from dataclasses import replace

import pytest

from chainnode.app import genesis, governance, records
from chainnode.cli.main import build_parser
from chainnode.core import crypto, identity, types
from chainnode.core.errors import ConfigError
from chainnode.core.statuses import ProposalStatus
from chainnode.tools import bench, bench_load, bench_mix, bench_report, network, verify_rate
from chainnode.tools.devnet import LocalNetwork, load_submitters
from tests.governance_harness import Chain, Network

COMMITS = [(10.0, 100), (11.0, 100), (12.0, 200), (14.0, 100)]  # (commit time, txs) per block


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, 0.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 4.0),
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([float(v) for v in range(1, 101)], 0.01, 1.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert bench.compute_percentile(values, fraction) == expected


@pytest.mark.parametrize(
    ("rank", "expected"),
    [(0, 5.0), (1, 10.0), (100, 10.0), (101, 11.0), (201, 12.0), (400, 12.0), (401, 14.0), (500, 14.0)],
)
def test_rank_time_is_the_commit_of_the_block_holding_the_rank(rank: int, expected: float) -> None:
    assert bench.compute_rank_time(COMMITS, rank, started=5.0) == expected


def test_rank_time_past_the_end_is_nan() -> None:
    assert math.isnan(bench.compute_rank_time(COMMITS, 501, started=5.0))


@pytest.mark.parametrize(
    ("rank_from", "rank_to", "expected"),
    [
        (100, 400, 150.0),  # 300 txs between t=10 and t=12
        (0, 100, 20.0),  # from the start signal at t=5
        (50, 100, 0.0),  # inside one block: no time passes
        (100, 900, 0.0),  # never reached
    ],
)
def test_rate_between_ranks(rank_from: int, rank_to: int, expected: float) -> None:
    assert bench.compute_rate(COMMITS, rank_from, rank_to, started=5.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("submit_finished", "expected_rate", "expected_fraction"),
    [
        (20.0, 150.0, 1.0),  # sent until after the window: the whole window counts (300 txs, 10 -> 12)
        (13.0, 150.0, 0.8),  # finished before the last block: the window ends at 12 all the same
        (12.5, 150.0, 0.8),
        (11.5, 0.0, 0.4),  # only 1.5 s of window while sending: too short to measure
        (9.0, 0.0, 0.0),
    ],
)
def test_sustained_rate_stops_where_the_submitter_stopped(
    submit_finished: float, expected_rate: float, expected_fraction: float
) -> None:
    commits = [*COMMITS, (16.0, 0)]
    rate, fraction = bench.compute_sustained_rate(commits, 10.0, 12.0, submit_finished)
    assert rate == pytest.approx(expected_rate)
    assert fraction == pytest.approx(expected_fraction)


def test_sustained_rate_counts_only_blocks_inside_the_window() -> None:
    # Window 10 -> 14, submitter done at 13: blocks at 11 and 12 (300 txs) over 3 s.
    rate, fraction = bench.compute_sustained_rate(COMMITS, 10.0, 14.0, 13.0)
    assert rate == pytest.approx(100.0)
    assert fraction == pytest.approx(0.8)


def test_proc_parsers_read_this_process() -> None:
    # Burn a little CPU so the counters cannot both be zero.
    sum(i * i for i in range(200_000))
    assert bench.get_process_cpu_s(os.getpid()) > 0
    assert bench.get_process_rss_peak_bytes(os.getpid()) > 1024 * 1024
    busy, total = bench.get_machine_cpu_ticks()
    assert 0 < busy <= total


def test_stat_parser_survives_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 30
    text = "1234 (my (odd) name) " + " ".join(fields)
    assert bench.parse_proc_cpu_s(text, ticks_per_s=100) == 4.0
    assert bench.parse_proc_rss_peak_bytes("Name:\tx\nVmHWM:\t  2048 kB\n") == 2048 * 1024
    assert bench.parse_proc_rss_peak_bytes("Name:\tx\n") == 0


def test_verify_rate_is_measured() -> None:
    assert verify_rate.measure_verify_rate(samples=2, sample_s=0.05) > 100


@pytest.mark.parametrize("sequence", range(40))
def test_workload_items_are_valid_record_puts(sequence: int) -> None:
    key, value = bench_mix.compute_record_args(sequence, entity_index=3, label="b1")
    records.check_put_args((key, value))  # raises TransactionError when invalid


def test_workload_updates_some_keys_and_adds_others() -> None:
    keys = [bench_mix.compute_record_args(sequence, 0, "b1")[0] for sequence in range(400)]
    assert len(set(keys)) < len(keys), "meter readings and status updates write new versions"
    assert sum(key.startswith("doc-") for key in keys) == len({k for k in keys if k.startswith("doc-")})


def test_pilot_mix_interleaves_every_kind_in_each_period_of_100() -> None:
    assert sum(bench_mix.PILOT_MIX.values()) == bench_mix.MIX_PERIOD_TXS
    assert Counter(kind for kind, _ in bench_mix.PILOT_SLOTS) == Counter(bench_mix.PILOT_MIX)
    # The puts are spread out: no run of other kinds longer than a few transactions.
    gaps = [i for i, (kind, _) in enumerate(bench_mix.PILOT_SLOTS) if kind == "records.put"]
    assert max(b - a for a, b in itertools.pairwise(gaps)) <= 3
    shares = {kind.split(".")[0]: 0 for kind in bench_mix.PILOT_MIX}
    for kind, count in bench_mix.PILOT_MIX.items():
        shares[kind.split(".")[0]] += count
    assert shares == {"records": 90, "assets": 10}


@pytest.mark.parametrize("txs", [0, 1, 99, 100, 101, 250, 12_345])
def test_count_kind_counts_what_the_items_are(txs: int) -> None:
    cast = bench_mix.PilotCast(tuple(f"e{i}" for i in range(7)), (2, 5))
    seen = Counter(bench_mix.compute_pilot_kind(sequence) for sequence in range(txs))
    assert {kind: bench_mix.count_kind(txs, kind) for kind in bench_mix.PILOT_MIX} == {
        kind: seen[kind] for kind in bench_mix.PILOT_MIX
    }
    assert all(bench_mix.compute_item("pilot", s, cast, "b1").signer < 7 for s in range(min(txs, 300)))


def test_records_mix_is_the_earlier_workload() -> None:
    cast = bench_mix.PilotCast(tuple(f"e{i}" for i in range(7)), ())
    for sequence in range(50):
        item = bench_mix.compute_item("records", sequence, cast, "b1")
        assert (item.signer, item.name) == (sequence % 7, "records.put")
        assert item.args == bench_mix.compute_record_args(sequence, sequence % 7, "b1")


def test_pilot_cast_needs_entities_and_an_issuer() -> None:
    assert bench_mix.PilotCast(("a", "b", "c", "d"), (0,)).find_problem() is None
    assert bench_mix.PilotCast(("a", "b", "c", "d"), ()).find_problem()
    assert bench_mix.PilotCast(("a", "b", "c"), (0,)).find_problem()


PILOT_TXS = 3_000  # past 2 x 140 grantee writes, so both set-up grant offsets are written under


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Network, LocalNetwork]:
    """The real pilot definition (config/pilot.toml) written by `network init`."""
    layout = network.init_network(tmp_path_factory.mktemp("pilot") / "net", chain_id="bench-mix")
    out = layout.out_dir
    net = Network(
        directory=out,
        genesis=genesis.load_genesis(layout.genesis_path),
        root_certificate=identity.load_certificate(out / "root" / "ca.pem"),
        root_key=crypto.SigningKey.load(out / "root" / "ca.key.pem"),
    )
    return net, LocalNetwork(out)


def _run_blocks(chain: Chain, txs: list[types.Transaction], names: list[str], seed: int) -> Counter[str]:
    ok: Counter[str] = Counter()
    for start in range(0, len(txs), 500):
        receipts = chain.run(*txs[start : start + 500])
        for name, receipt in zip(names[start : start + 500], receipts, strict=True):
            assert receipt.code == 0, f"{name}: {receipt.message} (seed {seed})"
            ok[name] += 1
    return ok


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pilot_mix_succeeds_in_any_commit_order(pilot: tuple[Network, LocalNetwork], seed: int) -> None:
    net, local = pilot
    identities = load_submitters(local.directory, local.entity_ids)
    cast = bench_mix.build_cast(identities)
    assert cast.find_problem() is None and len(cast.issuers) == bench_mix.COLLECTIONS_ISSUERS_MAX
    chain = Chain(net)
    nonce = bench_mix.SETUP_NONCE_BASE
    for phase in bench_mix.compute_setup_phases(cast, PILOT_TXS, "b1"):
        txs = []
        for item in phase:
            txs.append(bench_load.sign_item(identities, item, local.chain_id, nonce))
            nonce += 1
        _run_blocks(chain, txs, [item.name for item in phase], seed)
    items = [bench_mix.compute_item("pilot", sequence, cast, "b1") for sequence in range(PILOT_TXS)]
    order = list(range(PILOT_TXS))
    random.Random(seed).shuffle(order)
    txs = [bench_load.sign_item(identities, items[i], local.chain_id, i) for i in order]
    ok = _run_blocks(chain, txs, [items[i].name for i in order], seed)
    expected = Counter(item.name for item in items)
    assert ok == expected
    assert set(ok) == {"records.put", "records.put_to", "records.anchor", "records.grant"} | {
        f"assets.{action}" for action in ("mint", "transfer", "approve", "approve_all", "freeze")
    }


def _sample_report() -> bench.BenchReport:
    usage = (bench.ValidatorUsage("validator-01", 1.5, 80 * 1024 * 1024, 4096, 900.0, 150.0),)
    return bench.BenchReport(
        validators=4,
        txs=10,
        rate="max",
        committed_txs=10,
        rejected_txs=0,
        submit_retries=0,
        duration_s=1.0,
        committed_tps=10.0,
        sustained_tps=0.0,
        sustained_limit_ratio=0.0,
        committed_when_submit_ended=0.25,
        submitted_tps=20.0,
        latency_ms_p50=1.0,
        latency_ms_p95=2.0,
        latency_ms_p99=3.0,
        latency_ms_max=4.0,
        blocks=1,
        blocks_per_s=1.0,
        block_txs_mean=10.0,
        slice_tps=(1.0,) * 9 + (0.9,),
        last_vs_first_slice=-0.1,
        verify_per_s_single_core=20000.0,
        cpu_count=2,
        limit_tps=10000.0,
        limit_ratio=0.001,
        machine_busy_fraction=0.5,
        load_average_before=0.1,
        validators_agree=True,
        usage=usage,
        workload="records.put",
        receipts_ok={"records.put": 9, "assets.mint": 1},
        receipts_failed={},
    )


def test_report_formats_and_serialises() -> None:
    report = _sample_report()
    text = bench.format_report(report)
    assert "validator-01" in text and "p99 3 ms" in text
    assert "receipts ok          records.put 9, assets.mint 1" in text
    assert "receipts failed      none" in text
    assert "too short to measure; the submitter finished at 25% committed" in text
    assert "(last vs first -10.0%)" in text
    assert report.to_json()["usage"][0]["rss_peak_bytes"] == 80 * 1024 * 1024


def test_verify_figures_give_the_drift_and_the_cpu_in_verifications() -> None:
    usage = (
        bench.ValidatorUsage("validator-01", 1.0, 1, 1, 1.0, 100.0),
        bench.ValidatorUsage("validator-02", 1.0, 1, 1, 1.0, 140.0),
    )
    # Mean CPU 120 us a transaction, mean V 20,000/s: 2.4 verifications' worth.
    assert bench_report.compute_verify_figures(usage, 16_000.0, 24_000.0) == (0.5, 2.4)
    assert bench_report.compute_verify_figures(usage, 20_000.0, 0.0) == (0.0, 0.0)  # not measured after
    assert bench_report.compute_verify_figures((), 20_000.0, 19_000.0) == (-0.05, 0.0)


def test_report_names_a_machine_whose_speed_moved() -> None:
    steady = replace(_sample_report(), verify_per_s_single_core_after=19_000.0, verify_drift=-0.05)
    text = bench.format_report(steady)
    assert "20000/s on one core (19000/s after the run, -5.0%)" in text
    assert "WARNING" not in text
    moved = replace(steady, verify_per_s_single_core_after=15_000.0, verify_drift=-0.25)
    assert "WARNING: V moved -25% during the run" in bench.format_report(moved)
    assert bench.format_report(moved).splitlines()[1].startswith("  WARNING")


# ---------------------------------------------------------------- the realistic mix

COUNCIL = tuple(f"c{i:02d}" for i in range(15))


def _realistic_cast(members: int = 15, threshold: int = 10) -> bench_mix.PilotCast:
    return bench_mix.PilotCast(tuple(f"e{i}" for i in range(7)), (2, 5), COUNCIL[:members], threshold)


def test_realistic_mix_has_every_kind_in_its_proportions() -> None:
    table = bench_mix.REALISTIC_MIX
    assert sum(table.values()) == bench_mix.REALISTIC_PERIOD_TXS == 1000
    assert set(table) == {
        "records.put",
        "records.anchor",
        "records.grant",
        "assets.mint",
        "assets.transfer",
        "governance.vote",
    }
    assert table["governance.vote"] == 1 and table["records.put"] >= 500  # a few votes, mostly puts
    assert Counter(kind for kind, _ in bench_mix.REALISTIC_SLOTS) == Counter(table)
    cast = _realistic_cast()
    items = [bench_mix.compute_item("realistic", sequence, cast, "b1") for sequence in range(2000)]
    assert Counter(item.name for item in items) == Counter({kind: 2 * count for kind, count in table.items()})
    # The report names the proportions; the vote is placed early, so that a small run holds one.
    assert bench_mix.describe_workload("realistic") == "per 1000 txs: " + ", ".join(
        f"{count} {kind}" for kind, count in table.items()
    )
    assert [item.name for item in items[:100]].count("governance.vote") == 1


@pytest.mark.parametrize("txs", [0, 83, 84, 999, 1000, 12_345])
def test_realistic_count_kind_counts_what_the_items_are(txs: int) -> None:
    seen = Counter(bench_mix.compute_kind_rank("realistic", sequence)[0] for sequence in range(txs))
    counted = {kind: bench_mix.count_kind(txs, kind, "realistic") for kind in bench_mix.REALISTIC_MIX}
    assert counted == {kind: seen[kind] for kind in bench_mix.REALISTIC_MIX}


@pytest.mark.parametrize(("members", "threshold"), [(15, 10), (4, 3), (5, 2), (3, 3)])
def test_realistic_votes_are_first_votes_that_leave_set_up_proposals_open(
    members: int, threshold: int
) -> None:
    cast = _realistic_cast(members, threshold)
    txs = 40_000
    votes = [
        bench_mix.compute_item("realistic", sequence, cast, "b1")
        for sequence in range(txs)
        if bench_mix.compute_kind_rank("realistic", sequence)[0] == "governance.vote"
    ]
    assert len(votes) == 40
    proposals = [
        item for phase in bench_mix.compute_setup_phases(cast, txs, "b1", "realistic") for item in phase
    ]
    proposals = [item for item in proposals if item.name == "governance.propose"]
    assert len(proposals) == bench_mix.count_proposals(cast, txs, "realistic") >= 1
    assert {item.signer for item in proposals} == {cast.get_council_signer(0)}  # ids 1..P alike
    ballots: dict[int, list[tuple[int, bool]]] = {}
    for item in votes:
        proposal_id, approve = item.args
        ballots.setdefault(proposal_id, []).append((item.signer, approve))
    assert set(ballots) <= set(range(1, len(proposals) + 1))
    for ballot in ballots.values():
        voters = [signer for signer, _ in ballot]
        assert len(set(voters)) == len(voters) and cast.get_council_signer(0) not in voters
        assert all(cast.get_council_signer(1) <= s < cast.get_council_signer(members) for s in voters)
        assert 1 + sum(approve for _, approve in ballot) < threshold  # the proposer approved it
        assert sum(not approve for _, approve in ballot) <= members - threshold


def test_realistic_mix_needs_a_council_that_can_vote() -> None:
    assert _realistic_cast().find_problem("realistic") is None
    assert _realistic_cast(15, 1).find_problem("realistic")  # the proposal would execute at once
    assert _realistic_cast(2, 2).find_problem("realistic")  # the one vote would decide it
    assert _realistic_cast(2, 2).find_problem("pilot") is None
    assert bench_mix.PilotCast(("a",), ()).find_problem("records") is None


def test_set_up_of_the_other_mixes_opens_no_proposal() -> None:
    cast = _realistic_cast()
    names = {item.name for phase in bench_mix.compute_setup_phases(cast, 5000, "b1") for item in phase}
    assert "governance.propose" not in names and "assets.mint_batch" in names
    assert bench_mix.compute_setup_phases(cast, 5000, "b1", "records") == []


REALISTIC_TXS = 3_000
REALISTIC_VOTE_TXS = 30_000  # the votes of 30 000 txs: 3 proposals of the pilot council, 13 votes each


@pytest.mark.parametrize("seed", [1, 2])
def test_realistic_mix_succeeds_in_any_commit_order(pilot: tuple[Network, LocalNetwork], seed: int) -> None:
    net, local = pilot
    signers, cast = bench_load.load_signers(local.directory, local.entity_ids)
    assert cast.find_problem("realistic") is None and cast.council_threshold == 10 and len(cast.council) == 15
    chain = Chain(net)
    nonce = bench_mix.SETUP_NONCE_BASE
    for phase in bench_mix.compute_setup_phases(cast, REALISTIC_VOTE_TXS, "b1", "realistic"):
        txs = []
        for item in phase:
            txs.append(bench_load.sign_item(signers, item, local.chain_id, nonce))
            nonce += 1
        _run_blocks(chain, txs, [item.name for item in phase], seed)
    sequences = [
        sequence
        for sequence in range(REALISTIC_VOTE_TXS)
        if sequence < REALISTIC_TXS
        or bench_mix.compute_kind_rank("realistic", sequence)[0] == "governance.vote"
    ]
    items = {s: bench_mix.compute_item("realistic", s, cast, "b1") for s in sequences}
    random.Random(seed).shuffle(sequences)
    txs = [bench_load.sign_item(signers, items[s], local.chain_id, s) for s in sequences]
    ok = _run_blocks(chain, txs, [items[s].name for s in sequences], seed)
    assert ok == Counter(item.name for item in items.values())
    assert set(ok) == set(bench_mix.REALISTIC_MIX) and ok["governance.vote"] == 30
    # 30 votes on 3 proposals, each still open: no vote closed one that a later vote needed.
    assert governance.get_proposal_count(chain.state) == 3
    for proposal_id in (1, 2, 3):
        proposal = governance.get_proposal(chain.state, proposal_id)
        assert proposal is not None and proposal.status == ProposalStatus.OPEN


# ---------------------------------------------------------------- --duration, --workload, --mix


@pytest.mark.parametrize(
    ("duration_s", "due", "now", "over"),
    [
        (None, 0.0, 1e9, False),  # without a duration every batch is sent
        (10.0, 100.0, 109.9, False),  # at max rate: the clock decides
        (10.0, 100.0, 110.0, True),
        (10.0, 109.0, 101.0, False),  # at a fixed rate: a batch due before the end is sent
        (10.0, 110.5, 101.0, True),  # one due after it is not, though the clock is early
    ],
)
def test_submitter_stops_when_the_duration_has_passed(
    duration_s: float | None, due: float, now: float, over: bool
) -> None:
    assert bench_load.is_submit_over(duration_s, 100.0, due, clock=lambda: now) is over


def test_submit_threads_stop_at_the_duration_with_an_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The submit loop at 100 tx/s, batches of 10, 1 s: the batches due at 0.0 .. 0.9 s are sent."""
    clock = [0.0]
    sent: list[list[int]] = []
    fake_time = types_module.SimpleNamespace(
        monotonic=lambda: clock[0], sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds)
    )
    monkeypatch.setattr(bench_load, "time", fake_time)
    monkeypatch.setattr(
        bench_load, "_submit_one_batch", lambda client, positions, items, tally: sent.append(positions)
    )
    plan = bench_load.SubmitPlan(("http://127.0.0.1:9",), (), 1000, 10, 100, duration_s=1.0)
    tally = bench_load._SubmitTally(array.array("d"))
    batches = [[f"tx{i}" for i in range(start, start + 10)] for start in range(0, 1000, 10)]
    bench_load._run_submit_thread(plan, 0, batches, 0.0, tally)
    assert len(sent) == 10 and tally.sent == 100 and sent[-1][0] == 90
    unlimited = bench_load._SubmitTally(array.array("d"))
    bench_load._run_submit_thread(replace(plan, duration_s=None), 0, batches, clock[0], unlimited)
    assert unlimited.sent == 1000


@pytest.mark.parametrize(
    ("txs", "rate", "duration_s", "expected"),
    [(500, None, None, 500), (None, None, None, 10_000), (None, 200, 30.0, 6000), (None, None, 30.0, 10_000)],
)
def test_txs_to_sign(txs: int | None, rate: int | None, duration_s: float | None, expected: int) -> None:
    assert bench.resolve_txs(txs, rate, duration_s) == expected


@pytest.mark.parametrize("duration_s", [0.0, -1.0])
def test_bench_refuses_a_duration_that_is_not_positive(duration_s: float) -> None:
    with pytest.raises(ConfigError, match="duration"):
        bench.run_bench(bench.BenchConfig(txs=10, duration_s=duration_s))


def _parse_bench(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_bench_options_workload_duration_and_the_deprecated_mix(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse_bench()
    assert (args.workload, args.duration, args.txs) == ("realistic", None, None)
    assert _parse_bench("--workload", "pilot").workload == "pilot"
    assert capsys.readouterr().err == ""
    assert _parse_bench("--mix", "records").workload == "records"  # the old spelling still works
    assert "--mix is deprecated; use --workload" in capsys.readouterr().err
    args = _parse_bench("--duration", "90", "--rate", "100")
    assert (args.duration, args.rate) == (90.0, 100)
    for bad in (["--duration", "0"], ["--duration", "soon"], ["--workload", "heavy"]):
        with pytest.raises(SystemExit):
            _parse_bench(*bad)
    assert "bench: error" in capsys.readouterr().err


def test_report_states_the_duration_target() -> None:
    report = replace(_sample_report(), duration_target_s=60.0, mix="realistic")
    assert "rate max, for 60 s, mix realistic" in bench.format_report(report)
    assert report.to_json()["duration_target_s"] == 60.0
    assert _sample_report().to_json()["duration_target_s"] is None
