"""Every request checked against botocore's own service models, as AWS checks it before any rule runs.

One walker covers what a Smithy model can say: required members, types, string and blob lengths,
numeric ranges, patterns (whole-value matches, as AWS applies them), enums, unions (exactly one
member), list and map sizes, nested structures. Failures raise `ValidationException` in AWS's
shape: `message` ("N validation errors detected: Value at 'x' failed to satisfy constraint: ..."),
`reason` and `fieldList`. `check_output` runs the same walk over an answer and returns what is
wrong with it, so tests can hold every answer to the output shape.

`params_from_request` reads a rest-json request back into the operation's input members, using
each member's `location`/`locationName` (uri, querystring, header, payload, body), the inverse of
what botocore's serializer did.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from starlette.requests import Request

from ..errors import ValidationException

CONTROL, DATA = "bedrock-agentcore-control", "bedrock-agentcore"

# Members the output model marks required that an answer may still omit, each with why.
OUTPUT_EXEMPT = {
    # ListAgentRuntimes/ListAgentRuntimeVersions: `description` is required with 1-4,096 characters,
    # which a runtime created without a description cannot meet; an empty string breaks the length
    # rule, so the summary leaves it out (the finding: `description: ""`).
    ("AgentRuntime", "description"),
}
# What a JSON value of each kind of shape must be, and how AWS names the type it expected. A bool
# is an int to Python, but never a number or a timestamp to AWS.
TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "structure": (dict, "a structure (a JSON object)"),
    "map": (dict, "a map (a JSON object)"),
    "list": (list, "a list"),
    "string": (str, "a string"),
    "integer": (int, "an integer"),
    "long": (int, "an integer"),
    "float": ((int, float), "a number"),
    "double": ((int, float), "a number"),
    "boolean": (bool, "a boolean"),
    "blob": ((bytes, str), "a blob"),
    "timestamp": ((str, int, float), "a timestamp"),
}


@cache
def service_model(name: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(name)


@cache
def operation(service: str, name: str) -> OperationModel:
    """The model of one operation, e.g. operation(CONTROL, "CreateAgentRuntime")."""
    return service_model(service).operation_model(name)


@cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # Java-only syntax (\p{C}) in shapes no emulated operation uses
        return None


def _label(value: Any, shape: Shape) -> str:
    """AWS names the value in its message unless the shape is sensitive."""
    if shape.metadata.get("sensitive") or not isinstance(value, str | int) or isinstance(value, bool):
        return "Value"
    text = str(value)
    return f"Value '{text[:64]}{'...' if len(text) > 64 else ''}'"


class _Walk:
    """Collects (field name, message) for every constraint a value breaks."""

    def __init__(self, output: bool = False) -> None:
        self.output = output
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, value: Any, shape: Shape, constraint: str) -> None:
        where = path or shape.name
        self.errors.append(
            (where, f"{_label(value, shape)} at '{where}' failed to satisfy constraint: {constraint}")
        )

    def check(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        if kind in TYPES:
            allowed, expected = TYPES[kind]
            if not isinstance(value, allowed) or (isinstance(value, bool) and kind != "boolean"):
                self.fail(path, value, shape, f"Member must be {expected}")
                return
        checker = getattr(self, f"_{kind}", None)
        if checker is not None:
            checker(shape, value, path)

    def _members(self, shape: Shape, value: dict[str, Any], path: str, top: bool = False) -> None:
        for name, member in shape.members.items():
            if top and self.output and member.serialization.get("location"):
                continue  # headers and status codes of an answer are not in its JSON body
            child = f"{path}.{name}" if path else name
            item = value.get(name)
            if item is None:
                exempt = self.output and (shape.name, name) in OUTPUT_EXEMPT
                if name in shape.required_members and not exempt:
                    self.fail(child, None, member, "Member must not be null")
                continue
            if member.serialization.get("eventstream") or member.serialization.get("streaming"):
                continue
            self.check(member, item, child)

    def _structure(self, shape: Shape, value: Any, path: str) -> None:
        if shape.metadata.get("union"):
            present = [name for name in shape.members if value.get(name) is not None]
            if len(present) != 1:
                self.fail(
                    path,
                    value,
                    shape,
                    f"Member must have exactly one of {', '.join(shape.members)} set (found {len(present)})",
                )
                return
        self._members(shape, value, path)

    def _list(self, shape: Shape, value: Any, path: str) -> None:
        self._size(shape, len(value), value, path, "length")
        for index, item in enumerate(value):
            self.check(shape.member, item, f"{path}[{index}]")

    def _map(self, shape: Shape, value: Any, path: str) -> None:
        self._size(shape, len(value), value, path, "length")
        for key, item in value.items():
            self.check(shape.key, key, f"{path}.{key}(key)")
            self.check(shape.value, item, f"{path}.{key}")

    def _size(self, shape: Shape, size: int, value: Any, path: str, what: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.fail(path, value, shape, f"Member must have {what} greater than or equal to {low}")
        if high is not None and size > high:
            self.fail(path, value, shape, f"Member must have {what} less than or equal to {high}")

    def _string(self, shape: Shape, value: Any, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            # The length first, as AWS words it: "Value with length 32 at ..."
            self.errors.append(
                (
                    path,
                    f"Value with length {len(value)} at '{path}' failed to satisfy constraint: "
                    + (
                        f"Member must have length greater than or equal to {low}"
                        if low is not None and len(value) < low
                        else f"Member must have length less than or equal to {high}"
                    ),
                )
            )
        enum = shape.enum
        if enum and value not in enum:
            self.fail(path, value, shape, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = shape.metadata.get("pattern")
        compiled = _pattern(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            self.fail(path, value, shape, f"Member must satisfy regular expression pattern: {pattern}")

    def _number(self, shape: Shape, value: Any, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.fail(path, value, shape, f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            self.fail(path, value, shape, f"Member must have value less than or equal to {high}")

    _integer = _long = _float = _double = _number  # the type was checked in `check`

    def _blob(self, shape: Shape, value: Any, path: str) -> None:
        self._size(shape, len(value), "", path, "length")


def validate_input(op: OperationModel, params: dict[str, Any]) -> None:
    """Raise ValidationException (all broken constraints in `fieldList`) unless `params` fits the model."""
    walk = _Walk()
    if op.input_shape is not None:
        walk._members(op.input_shape, params, "", top=True)
    if walk.errors:
        count = len(walk.errors)
        message = f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(
            text for _, text in walk.errors
        )
        raise ValidationException(message, fields=[{"name": n, "message": m} for n, m in walk.errors])


def check_output(op: OperationModel, body: dict[str, Any]) -> list[str]:
    """What in an answer's JSON body breaks the operation's output shape (empty when it fits)."""
    walk = _Walk(output=True)
    if op.output_shape is not None:
        walk._members(op.output_shape, body, "", top=True)
    return [text for _, text in walk.errors]


# --- the HTTP request back into input members ------------------------------------------------


def _scalar(shape: Shape, raw: str) -> Any:
    """A querystring/header/uri value as the member's type; left as text when it does not parse,
    so the type check reports it."""
    if shape.type_name in ("integer", "long"):
        return int(raw) if re.fullmatch(r"-?[0-9]+", raw) else raw
    if shape.type_name in ("float", "double"):
        try:
            return float(raw)
        except ValueError:
            return raw
    if shape.type_name == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    return raw


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationException(f"The request body is not JSON: {error}", reason="CannotParse") from error


def params_from_request(op: OperationModel, request: Request, body: bytes) -> dict[str, Any]:
    """The input members a rest-json request carries: uri, querystring and header members by their
    locationName, the payload member (raw bytes for a blob, parsed JSON for a structure), and the
    JSON body's members otherwise."""
    shape = op.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri":
            if wire in request.path_params:
                params[name] = _scalar(member, request.path_params[wire])
        elif location == "querystring":
            if member.type_name == "list":
                values = request.query_params.getlist(wire)
                if values:
                    params[name] = [_scalar(member.member, v) for v in values]
            elif wire in request.query_params:
                params[name] = _scalar(member, request.query_params[wire])
        elif location == "header":
            if wire in request.headers:
                params[name] = _scalar(member, request.headers[wire])
        elif location == "headers":  # a map of every header with this prefix
            found = {
                k[len(wire) :]: v for k, v in request.headers.items() if k.lower().startswith(wire.lower())
            }
            if found:
                params[name] = found
    if payload:
        member = shape.members[payload]
        if member.type_name == "blob":
            params[payload] = body
        elif body:
            params[payload] = _json(body)
        return params
    if body:
        parsed = _json(body)
        if not isinstance(parsed, dict):
            raise ValidationException("The request body must be a JSON object", reason="CannotParse")
        for name, member in shape.members.items():
            if not member.serialization.get("location") and name in parsed:
                params[name] = parsed[name]
    return params
