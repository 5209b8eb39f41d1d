"""Request validation for the Replicate emulator, answering the way the real API does (422 + ``invalid_fields``).

The body of ``POST /v1/models/{owner}/{name}/predictions`` follows ``schemas_prediction_request``
(``additionalProperties: false``); the ``input`` object follows the model's schema in
``imggen/data/replicate_models.json``.
"""

from __future__ import annotations

from typing import Any

from imggen.backends.replicate_catalog import ReplicateModel

_BODY_KEYS = {"input", "webhook", "webhook_events_filter", "stream"}
_URI_PREFIXES = ("http://", "https://", "data:")


def invalid_fields(model: ReplicateModel, body: Any) -> list[dict[str, str]]:
    """Every problem with a create-prediction body, as the API's ``invalid_fields`` entries."""
    if not isinstance(body, dict):
        return [_field("type", "(root)", "Invalid type. Expected: object")]
    problems = [
        _field("additional_property_not_allowed", "(root)", f"Additional property {key} is not allowed")
        for key in sorted(set(body) - _BODY_KEYS)
    ]
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        return [*problems, _field("required", "input", "input is required and must be an object")]
    for key, spec in model.inputs.items():
        if spec.get("required") and key not in inputs:
            problems.append(_field("required", "input", f"{key} is required"))
    for key, value in inputs.items():
        spec = model.inputs.get(key)
        if spec is None:
            problems.append(
                _field("additional_property_not_allowed", "input", f"Additional property {key} is not allowed")
            )
        else:
            problems.extend(_value_problems(key, value, spec, inputs))
    return problems


def validation_detail(problems: list[dict[str, str]]) -> str:
    """The API's ``detail`` text: one ``- field: description`` line per problem."""
    return "".join(f"- {problem['field']}: {problem['description']}\n" for problem in problems)


def _value_problems(key: str, value: Any, spec: dict[str, Any], inputs: dict[str, Any]) -> list[dict[str, str]]:
    field = f"input.{key}"
    expected = spec["type"]
    if not _has_type(value, expected):
        return [_field("invalid_type", field, f"Invalid type. Expected: {expected}, given: {type(value).__name__}")]
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(f'"{option}"' for option in spec["enum"])
        return [_field("enum", field, f"{key} must be one of the following: {allowed}")]
    maximum = spec.get("maximum")
    if "maximum_with_input_image" in spec and inputs.get("input_image"):
        maximum = spec["maximum_with_input_image"]
    if "minimum" in spec and value < spec["minimum"]:
        return [_field("number_gte", field, f"Must be greater than or equal to {spec['minimum']}")]
    if maximum is not None and value > maximum:
        return [_field("number_lte", field, f"Must be less than or equal to {maximum}")]
    return []


def _has_type(value: Any, expected: str) -> bool:
    if expected == "uri":
        return isinstance(value, str) and value.startswith(_URI_PREFIXES)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "boolean": bool}[expected])


def _field(kind: str, field: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": field, "description": description}
