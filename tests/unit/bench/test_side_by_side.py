"""Reading the FedAvg reports that the side-by-side benchmark compares (:mod:`tools.bench.side_by_side`)."""

from __future__ import annotations

import pytest

from tools.bench.side_by_side import Reading, parse, report

REPORT = """FedAvg, 10 organizations, 15 rounds (185 tasks), aggregation on MyOrg1MSP:

| submission to DONE (s) | round times (s) | steady-state round, median (s) |
|---|---|---|
| 28.3 | 1.22, 0.67, 0.51 | **0.55** |

Phases of a steady round, medians (s):

| phase | s |
|---|---|
| aggregation started to DONE | 0.079 |

CPU per round over the last 13 rounds (s, all organizations):

| component | CPU s |
|---|---|
| compute | 0.208 |
| ledger | 0.202 |
| this process (SDK, polling) | 0.014 |
| **total** | **0.424** |

SQL statements per completed task over the steady rounds (143 tasks; ...):

| ledger | organizations' databases (all) |
|---|---|
| **18.4** | **15.0** |
"""


def test_a_report_gives_its_steady_round_and_cpu_by_component():
    reading = parse(REPORT)
    assert reading.round == 0.55
    assert reading.cpu == {"compute": 0.208, "ledger": 0.202, "this process (SDK, polling)": 0.014}
    assert reading.total == pytest.approx(0.424)
    assert reading.phases == {"aggregation started to DONE": 0.079}


def test_a_report_without_a_round_is_refused():
    with pytest.raises(ValueError, match="no steady round"):
        parse("the network did not start")


def test_the_comparison_divides_b_by_a_per_component_and_in_total():
    runs = [
        (Reading(0.6, {"ledger": 0.2, "event": 0.1}), Reading(0.5, {"ledger": 0.2, "event": 0.05})),
        (Reading(0.7, {"ledger": 0.4, "event": 0.2}), Reading(0.7, {"ledger": 0.4, "event": 0.2})),
    ]
    runs[0][0].phases["aggregation"] = runs[1][0].phases["aggregation"] = 0.1
    runs[0][1].phases["aggregation"], runs[1][1].phases["aggregation"] = 0.04, 0.06
    lines = report(runs, "A", "B")
    assert "| aggregation | 0.100 | 0.050 |" in lines
    assert "| 1 | 0.60 | 0.50 | 0.300 | 0.250 | 0.833 |" in lines
    assert "| event | 0.750 |" in lines  # median of 0.5 and 1.0
    assert "| **total** | **0.917** |" in lines
