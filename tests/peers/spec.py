"""The schemas in tests/peers/specs/ as validators: of what a peer answers and of the
parameters a connector sends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).resolve().parent / "specs"
_TRUE_FALSE = {"true", "false", "1", "0"}
# Koha's swagger and FOLIO's schemas say "date" and "date-time"; draft 4 checks neither itself.
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    return not isinstance(value, str) or bool(dt.date.fromisoformat(value))


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or dt.datetime.fromisoformat(value).tzinfo is not None


class Spec:
    def __init__(self, system: str) -> None:
        documents = {p.name: json.loads(p.read_text()) for p in (SPECS / system).glob("*.json")}
        self.operations: dict[str, dict[str, Any]] = documents.pop("operations.json")["operations"]
        self.registry: Registry = Registry().with_resources(
            (name, Resource.from_contents(doc, default_specification=DRAFT4))
            for name, doc in documents.items()
        )

    def errors(self, schema: str | dict[str, Any], instance: Any) -> list[str]:
        """Where ``instance`` breaks ``schema`` (a file name, or a schema referring to files)."""
        root = {"$ref": schema} if isinstance(schema, str) else schema
        validator = Draft4Validator(root, registry=self.registry, format_checker=FORMATS)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def parameter_errors(
        self, operation: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> list[str]:
        """Query parameters the operation does not declare or whose value it would refuse, and
        declared headers with refused values (as the ILS's own request validation would)."""
        declared = {p["name"]: p for p in self.operations[operation].get("parameters", [])}
        found = []
        for name, values in query.items():
            parameter = declared.get(name)
            if parameter is None or parameter["in"] != "query":
                found.append(f"query parameter {name} is not declared")
                continue
            found += [f"{name}: {e}" for v in values for e in _value_errors(parameter, v)]
        for name, parameter in declared.items():
            if parameter["in"] == "header" and name in headers:
                found += [f"{name}: {e}" for e in _value_errors(parameter, headers[name])]
        return found


def _value_errors(parameter: dict[str, Any], value: str) -> list[str]:
    values = value.split(",") if parameter["type"] == "array" and "enum" in parameter else [value]
    errors = []
    for one in (v.strip() for v in values):
        if parameter["type"] == "integer":
            if not one.lstrip("-").isdigit():
                errors.append(f"{one!r} is not an integer")
            elif int(one) < parameter.get("minimum", int(one)):
                errors.append(f"{one} is below the minimum")
        if parameter["type"] == "boolean" and one not in _TRUE_FALSE:
            errors.append(f"{one!r} is not a boolean")
        if "enum" in parameter and one not in parameter["enum"]:
            errors.append(f"not in enum list: {one}")
    return errors
