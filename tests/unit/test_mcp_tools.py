"""The MCP server's pure parts: what an agent is told it may ask for."""

from __future__ import annotations

from typing import get_args

from sinks.mcp import AlertType, top_values
from streams.alert_rules import ALERT_TYPES


def test_the_alert_type_an_agent_may_filter_on_is_every_type_the_worker_sends():
    assert get_args(AlertType) == ALERT_TYPES


def test_top_values_count_a_number_and_its_text_as_one_value_in_canonical_form():
    rows = [("v1", 0, "", 2.0, 3), ("v1", 1, "2", 0.0, 1), ("v1", 1, "x", 0.0, 2), ("v1", 0, "", 1e-05, 2),
            ("v2", 1, "north", 0.0, 5)]
    assert top_values(rows, 2) == [("v1", "2", 4), ("v1", "1e-05", 2), ("v2", "north", 5)]
