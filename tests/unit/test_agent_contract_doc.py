"""docs/agent-api.md must match the contract it documents, both ways, so it cannot go stale.

* every model of ``onair.api.agent`` has a section (heading = class name) whose table lists
  exactly its wire (camelCase) field names;
* every value a status field can take from a fixed set is spelled out in that section;
* every Prometheus metric an agent registers is documented, and no documented one is gone;
* every port of ``onair.roles`` and every URL ``onair.endpoints`` builds appears as built.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from onair import endpoints
from onair.api import agent as contract
from onair.api.base import ApiModel
from onair.roles import MEDIA_ROLES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "agent-api.md"
AGENT_SOURCES = ROOT / "operator" / "onair" / "agent"
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
FIRST_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|")
# Metric names are string literals named after their role, however the metric is constructed.
METRIC_DEFINITION = re.compile(r"[\"'](onair_(?:%s)_[a-z0-9_]+)[\"']" % "|".join(MEDIA_ROLES))
DOCUMENTED_METRIC = re.compile(r"`(onair_[a-z0-9_]+)`")

MODELS = sorted(
    (
        obj
        for _, obj in inspect.getmembers(contract, inspect.isclass)
        if issubclass(obj, ApiModel) and obj is not ApiModel and obj.__module__ == contract.__name__
    ),
    key=lambda m: m.__name__,
)


def doc_text() -> str:
    return DOC.read_text()


def sections() -> dict[str, str]:
    """Heading text -> the lines under it up to the next heading of any level."""
    out: dict[str, list[str]] = {}
    current = None
    for line in doc_text().splitlines():
        match = HEADING.match(line)
        if match:
            current = match.group(2)
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


def wire_fields(model) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def table_fields(section: str) -> list[str]:
    """First-column names of the section's first table (the field table)."""
    names, in_table = [], False
    for line in section.splitlines():
        if line.startswith("|"):
            in_table = True
            match = FIRST_CELL.match(line)
            if match:
                names.append(match.group(1))
        elif in_table:
            break
    return names


def literal_values(annotation) -> set[str]:
    values: set[str] = set()
    if typing.get_origin(annotation) is typing.Literal:
        values.update(str(v) for v in typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        values |= literal_values(arg)
    return values


def test_every_model_is_documented():
    documented = sections()
    missing = [m.__name__ for m in MODELS if m.__name__ not in documented]
    assert not missing, f"docs/agent-api.md has no section (heading) for {missing}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_section_lists_exactly_the_models_fields(model):
    section = sections().get(model.__name__)
    if section is None:
        pytest.fail(f"docs/agent-api.md has no '## {model.__name__}' section")
    listed = table_fields(section)
    wanted = wire_fields(model)
    missing = [f for f in wanted if f not in listed]
    stale = [f for f in listed if f not in wanted]
    assert not missing, f"{model.__name__}: add {missing} to its table in docs/agent-api.md"
    assert not stale, f"{model.__name__}: {stale} are documented but no longer fields"
    assert len(listed) == len(set(listed)), f"{model.__name__}: a field is listed twice"


@pytest.mark.parametrize(
    "model", [m for m in MODELS if m.__name__.endswith("Status") or m is contract.Desired], ids=lambda m: m.__name__
)
def test_every_fixed_value_of_a_status_field_is_spelled_out(model):
    section = sections()[model.__name__]
    for name, info in model.model_fields.items():
        for value in literal_values(info.annotation):
            assert f"`{value}`" in section, f"{model.__name__}.{name}: value {value!r} is not documented"


def registered_metrics() -> set[str]:
    names = set()
    for path in AGENT_SOURCES.rglob("*.py"):
        names.update(METRIC_DEFINITION.findall(path.read_text()))
    return names


def test_every_agent_metric_is_documented_and_none_is_stale():
    registered = registered_metrics()
    assert registered, "found no metric definitions: the pattern no longer matches the code"
    documented = set(DOCUMENTED_METRIC.findall(doc_text()))
    assert not registered - documented, f"document these metrics: {sorted(registered - documented)}"
    assert not documented - registered, f"documented metrics no agent registers: {sorted(documented - registered)}"


def test_every_role_port_is_in_the_ports_table():
    ports = sections()["Ports"]
    for role in MEDIA_ROLES.values():
        for port in role.ports:
            row = re.search(
                rf"^\|[^|\n]*\|\s*`{port.name}`\s*\|\s*{port.number}\s*\|\s*{port.protocol}\s*\|", ports, re.MULTILINE
            )
            assert row, f"{role.name} port {port.name} {port.number}/{port.protocol} missing from the Ports table"


def test_url_spellings_are_the_ones_endpoints_builds():
    text = doc_text()
    built = [
        endpoints.rtmp_push_url("<host>"),
        endpoints.rtmp_push_url("<host>", 1936, tls=True),
        endpoints.whip_url("<host>", tls=True),
        endpoints.ingest_read_url("<ingest service>"),
        endpoints.origin_upload_url("<origin service>"),
        *endpoints.playback_urls("<base>").values(),
    ]
    for url in built:
        assert url in text, f"docs/agent-api.md does not spell {url}"
    for key in endpoints.playback_urls("x"):
        assert f"`{key}`" in text, f"playback URL key {key} is not documented"
    assert endpoints.srt_push_url("<host>").split("?")[0] in text
