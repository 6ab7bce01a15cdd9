"""The Grafana dashboard shipped in the docs (``docs/_static/grafana-dashboard.json``) queries metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qakeapi.core.counters import Counters
from qakeapi.core.snapshot import take

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "_static" / "grafana-dashboard.json"


def exported_series() -> set[str]:
    """Every series name a reading exposes (counters with ``_total``, histograms with their suffixes)."""
    names = set()
    for family in take("n", source=Counters()):
        if family.kind == "counter":
            names.add(family.name + "_total")
        elif family.kind == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def test_every_panel_queries_only_metrics_qakeapi_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bqakeapi_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    # Every metric family is on the dashboard somewhere (a new metric gets a panel).
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    assert {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used} == families
