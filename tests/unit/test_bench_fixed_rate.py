"""The bench's fixed-rate scenario is offered half the bare transfer's rate of the same run (issue #14's
latency target), unless --rate says otherwise."""

from tools.bench.run import FALLBACK_RATE_PER_S, fixed_rate_of, parse_args


def test_the_fixed_rate_is_half_the_bare_transfers_rate_measured_before_it():
    results = [{"key": "bare_noop", "requests_per_s": 3000.0}, {"key": "bare_transfer", "requests_per_s": 1281.0}]
    assert fixed_rate_of(results, requested=None) == 640


def test_a_requested_rate_wins_and_a_missing_reference_falls_back():
    assert fixed_rate_of([{"key": "bare_transfer", "requests_per_s": 1281.0}], requested=300) == 300
    assert fixed_rate_of([], requested=None) == FALLBACK_RATE_PER_S


def test_the_full_bench_leaves_the_rate_to_the_reference_and_the_smoke_run_fixes_it():
    assert parse_args([]).rate is None
    assert parse_args(["--smoke"]).rate == 50
    assert parse_args(["--rate", "700"]).rate == 700
