"""The submission benchmark's honesty rules: only 2xx count, the store must agree, and
the median run is reported whole."""

from __future__ import annotations

from dexecutor.bench import _parse_wrk, check_submission, median_run

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:3941/api/orders/execute
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    29.66ms   17.09ms 140.96ms   87.81%
  Latency Distribution
     50%   23.82ms
     75%   30.00ms
     90%   50.00ms
     99%  103.01ms
  22800 requests in 10.05s, 4.35MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 800
Requests/sec:   2268.66
Transfer/sec:    443.25KB
"""


def test_only_2xx_answers_count_as_accepted() -> None:
    figures = _parse_wrk(WRK_OUTPUT)
    assert figures["requests"] == 22800 and figures["non_2xx"] == 800
    assert figures["ok_2xx"] == 22000
    assert round(figures["rps_2xx"]) == round(22000 / 10.05)
    assert figures["rps_all"] == 2268.66  # wrk's own rate counts the refusals too
    assert figures["socket_errors"] == 3
    assert figures["p50_ms"] == 23.82 and figures["p99_ms"] == 103.01


def test_refusals_socket_errors_and_lost_orders_fail_the_run() -> None:
    figures = _parse_wrk(WRK_OUTPUT) | {"stored_orders": 21990}
    problems = check_submission(figures)
    assert any("800 non-2xx" in p for p in problems)
    assert any("3 socket errors" in p for p in problems)
    assert any("22000 orders accepted but only 21990 stored" in p for p in problems)


def test_a_clean_run_passes_with_the_requests_in_flight_at_the_end() -> None:
    clean = {"requests": 1000.0, "non_2xx": 0.0, "socket_errors": 0.0, "ok_2xx": 1000.0}
    assert check_submission(clean | {"stored_orders": 1000}) == []
    assert check_submission(clean | {"stored_orders": 1064}) == []  # one per connection
    assert check_submission(clean | {"stored_orders": 1065}) != []


def test_the_median_run_is_one_run_whole() -> None:
    runs = [
        {"rps_2xx": 3000.0, "p99_ms": 10.0},
        {"rps_2xx": 1000.0, "p99_ms": 90.0},
        {"rps_2xx": 2000.0, "p99_ms": 200.0},
    ]
    median = median_run("submission", runs)
    assert (median["rps_2xx"], median["p99_ms"]) == (2000.0, 200.0)  # not p99 90 from another
    assert median["runs"] == 3 and median["every_run"] == runs
