"""Every emulated operation's input, walked from botocore's service models and sent as raw HTTP.

For each member of each operation the model constrains, the walk builds boundary values (lengths
min-1/min/max/max+1, numbers out of range, pattern violations, bad enum values, unions with 0
and 2 members, list and map sizes, missing required members, wrong JSON types) and asserts AWS's
answer: a ValidationException for what the model refuses, anything else (often
ResourceNotFoundException: the ids are made up) for what it accepts. Requests are serialized by
botocore's own rest-json serializer with client-side validation skipped, so a newer botocore
model is walked without new code. The emulated operations are the model's operations whose
method and path route in agentcore_local. JSON answers are held to the output shapes.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import re._parser as regex_parser  # the stdlib's own regex parser: strings that match a model pattern
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.model import OperationModel, Shape
from botocore.serialize import create_serializer
from starlette.routing import Match

from agentcore_local.api import urls
from agentcore_local.api.validation import check_output
from tests.support.local_runtime import LocalRuntime, local_runtime

SERVICES = ("bedrock-agentcore-control", "bedrock-agentcore")
# Values the generator cannot know: names and tokens that must be new on every request.
_counter = itertools.count()
FRESH = {
    "AgentRuntimeName": lambda: f"walk_{next(_counter)}",
    "EndpointName": lambda: f"walk_ep_{next(_counter)}",
    "ClientToken": lambda: uuid.uuid4().hex + uuid.uuid4().hex[:8],
    "RoleArn": lambda: "arn:aws:iam::123456789012:role/Walk",
    "RuntimeContainerUri": lambda: "123456789012.dkr.ecr.us-west-2.amazonaws.com/walk:1",
    "MountPath": lambda: f"/mnt/w{next(_counter)}",
}
# Values the model accepts that a documented rule refuses, by (operation, field name prefix); the
# rule's source is in agentcore_local/runtime_config.py or responses.py.
HAND_RULES = {
    ("CreateAgentRuntime", "lifecycleConfiguration"),  # microVM limit 28,800 s, idle <= max
    ("CreateAgentRuntime", "filesystemConfigurations"),  # one sessionStorage, VPC for EFS/S3 Files
    ("InvokeAgentRuntimeCommand", "body.timeout"),  # 1-3,600 s
    # a code zip must be readable in S3 when the runtime is created or updated
    ("CreateAgentRuntime", "agentRuntimeArtifact.codeConfiguration"),
    ("UpdateAgentRuntime", "agentRuntimeArtifact.codeConfiguration"),
    ("InvokeAgentRuntime", "runtimeSessionId"),  # the answer's alphabet
    ("StopRuntimeSession", "runtimeSessionId"),
    ("InvokeAgentRuntimeCommand", "runtimeSessionId"),
    ("GetAgentCard", "runtimeSessionId"),
    # nextToken is opaque: one the service did not hand out is refused
    *(
        (op, "nextToken")
        for op in ("ListAgentRuntimes", "ListAgentRuntimeVersions", "ListAgentRuntimeEndpoints")
    ),
}
GHOST_ID = "ghost-AAAAAAAAAA"
WRONG_TYPES = {
    "a number for a string",
    "a string for a boolean",
    "a string for a structure",
    "a string for a list",
    "a string for a map",
}
HTTP = httpx.Client(timeout=30)  # one client: a new one per request costs ~40 ms of TLS setup


def matching(pattern: str, reps: int) -> str | None:
    """A string matching `pattern`, each repeat taken `reps` times within its bounds (None: unsupported)."""

    def emit(items) -> str:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "NOT_LITERAL":
                out.append("a" if chr(arg) != "a" else "b")
            elif name == "ANY":
                out.append("a")
            elif name == "IN":
                out.append(_first_in(arg))
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                low, high, sub = arg
                count = max(low, min(reps, high if high != regex_parser.MAXREPEAT else reps))
                out.append(emit(sub) * count)
            elif name == "SUBPATTERN":
                out.append(emit(arg[-1]))
            elif name == "BRANCH":
                out.append(emit(arg[1][0]))
            elif name == "CATEGORY":
                out.append(_category(str(arg)))
            elif name in ("AT",):
                continue
            else:
                raise ValueError(name)
        return "".join(out)

    try:
        text = emit(regex_parser.parse(pattern))
    except (ValueError, re.error):
        return None
    return text if re.fullmatch(pattern, text) else None


def _category(name: str) -> str:
    return {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a"}.get(name, "a")


def _first_in(items) -> str:
    if str(items[0][0]) == "NEGATE":
        banned = {chr(a) for op, a in items[1:] if str(op) == "LITERAL"}
        return next(c for c in "aZ0-" if c not in banned)
    op, arg = items[0]
    if str(op) == "RANGE":
        return chr(arg[0])
    if str(op) == "CATEGORY":
        return _category(str(arg))
    return chr(arg)


def string_of(shape: Shape, length: int | None = None) -> str | None:
    """A valid string for `shape` (of exactly `length` characters when asked), or None."""
    if shape.name in FRESH and length is None:
        return FRESH[shape.name]()
    if shape.enum:
        return shape.enum[0] if length is None or len(shape.enum[0]) == length else None
    pattern = shape.metadata.get("pattern")
    low, high = shape.metadata.get("min", 0), shape.metadata.get("max", 10**9)
    if not pattern:
        size = max(low, 1) if length is None else length
        return "a" * size
    tries = [1, 0, 2, 3, 5, 8, 13, 20, 40, 100, 300]
    short, longer = matching(pattern, 0), matching(pattern, 1)
    if length is not None and short is not None and longer is not None and len(longer) > len(short):
        # One repeat grows by a fixed step: aim straight at the length asked for.
        step = len(longer) - len(short)
        tries.insert(0, max(0, (length - len(short)) // step))
    for reps in tries:
        text = matching(pattern, reps)
        if text is not None and low <= len(text) <= high and (length is None or len(text) == length):
            return text
    return None


def value_of(shape: Shape, depth: int = 0) -> Any:
    """A minimal valid value: required members only, a union's first member, lists at their minimum."""
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("union"):
            name, member = next(iter(shape.members.items()))
            return {name: value_of(member, depth + 1)}
        return {n: value_of(m, depth + 1) for n, m in shape.members.items() if n in shape.required_members}
    if kind == "list":
        return [value_of(shape.member, depth + 1) for _ in range(max(shape.metadata.get("min", 0), 1))]
    if kind == "map":
        count = shape.metadata.get("min", 0)
        return {f"{string_of(shape.key)}{i}": value_of(shape.value) for i in range(count)}
    if kind in ("integer", "long"):
        return shape.metadata.get("min", 1)
    if kind in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "blob":
        return b'{"prompt": "hi"}'
    if kind == "timestamp":
        return 0
    text = string_of(shape)
    if text is None:
        raise LookupError(f"no value for {shape.name} (pattern {shape.metadata.get('pattern')})")
    return text


@dataclass
class Case:
    operation: str
    field: str
    label: str
    params: dict[str, Any]
    valid: bool
    path: list | None = None
    value: Any = None


def cases_for(op: OperationModel, base_of: Callable[[], dict[str, Any]]) -> Iterator[Case]:
    """Every boundary case of every member reachable from the input shape (3 levels of nesting)."""
    skipped: list[str] = []
    for path, shape, container_top in members(op.input_shape, []):
        field = ".".join(str(p) for p in path)
        in_body = not container_top
        for label, value, valid in boundaries(shape, in_body, skipped):
            try:
                params = set_at(base_of(), op.input_shape, path, value)
            except LookupError as error:
                skipped.append(f"{field}: {error}")
                continue
            yield Case(op.name, field, label, params, valid, path, value)
    payload = op.input_shape.serialization.get("payload")
    for name in op.input_shape.required_members:
        member = op.input_shape.members[name]
        if member.serialization.get("location") == "uri":
            continue  # a path without it routes elsewhere
        if name == payload and member.type_name == "blob":
            continue  # on the wire a missing blob payload is an empty one, which the model allows
        params = {k: v for k, v in base_of().items() if k != name}
        yield Case(op.name, name, "required member missing", params, False)


def members(shape: Shape, path: list, depth: int = 0) -> Iterator[tuple[list, Shape, bool]]:
    for name, member in shape.members.items():
        here = [*path, name]
        location = member.serialization.get("location")
        yield here, member, bool(location)
        if depth >= 3 or member.serialization.get("streaming"):
            continue
        if member.type_name == "structure":
            yield from members(member, here, depth + 1)
        elif member.type_name == "list" and member.member.type_name == "structure":
            yield from members(member.member, [*here, 0], depth + 1)


def boundaries(shape: Shape, in_body: bool, skipped: list[str]) -> Iterator[tuple[str, Any, bool]]:
    meta, kind = shape.metadata, shape.type_name
    low, high = meta.get("min"), meta.get("max")
    if kind == "string":
        if low is not None and low > 0:
            yield f"length {low - 1}", "a" * (low - 1), False
        if high is not None and high < 200_000:
            yield f"length {high + 1}", "a" * (high + 1), False
        for size in {s for s in (low, high) if s is not None and s < 200_000}:
            text = string_of(shape, size)
            if text is not None:
                yield f"length {size}", text, True
        if meta.get("pattern") and not shape.enum:
            size = max(low or 1, 1)
            bad = next((c * size for c in "!~ " if not re.fullmatch(meta["pattern"], c * size)), None)
            if bad is not None and (high is None or len(bad) <= high):
                yield "off the pattern", bad, False
        if shape.enum:
            yield "not in the enum", "NOT_A_MEMBER_OF_THE_ENUM", False
            yield f"enum {shape.enum[-1]}", shape.enum[-1], True
        if in_body:
            yield "a number for a string", 12345, False
    elif kind in ("integer", "long"):
        if low is not None:
            yield f"value {low - 1}", low - 1, False
            yield f"value {low}", low, True
        if high is not None:
            yield f"value {high}", high, True
            yield f"value {high + 1}", high + 1, False
        yield "not a number", "twelve", False
    elif kind == "boolean" and in_body:
        yield "a string for a boolean", "yes", False
    elif kind == "structure" and shape.metadata.get("union"):
        yield "union with 0 members", {}, False
        if len(shape.members) >= 2:
            two = dict(itertools.islice(((n, value_of(m)) for n, m in shape.members.items()), 2))
            yield "union with 2 members", two, False
    elif kind == "structure" and in_body:
        yield "a string for a structure", "x", False
    elif kind in ("list", "map"):
        sample = value_of(shape.member) if kind == "list" else None
        make = (lambda n: [copy.deepcopy(sample) for _ in range(n)]) if kind == "list" else _map_of(shape)
        if low:
            yield f"{low - 1} entries", make(low - 1), False
        if high is not None and high <= 250:
            yield f"{high + 1} entries", make(high + 1), False
        if in_body:
            yield f"a string for a {kind}", "x", False
    elif kind == "blob" and high is not None and high < 200_000:
        yield f"{high + 1} bytes", b"a" * (high + 1), False


def _map_of(shape: Shape):
    def make(count: int) -> dict:
        key = string_of(shape.key) or "k"
        return {f"{key}{i}": value_of(shape.value) for i in range(count)}

    return make


def set_at(base: dict[str, Any], shape: Shape, path: list, value: Any) -> dict[str, Any]:
    """A copy of `base` with `value` at `path`, parents filled in with minimal valid values."""
    params = copy.deepcopy(base)
    node, here = params, shape
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(step, int):
            here = here.member
            if not node:
                node.append(value_of(here))
            if last:
                node[0] = value
            node = node[0]
            continue
        member = here.members[step]
        if here.metadata.get("union"):  # only the member on the path stays set
            for other in [k for k in node if k != step]:
                del node[other]
        if last:
            node[step] = value
        else:
            if step not in node:
                node[step] = [] if member.type_name == "list" else value_of(member)
            node = node[step]
        here = member
    return params


def shape_at(shape: Shape, path: list) -> Shape:
    for step in path:
        shape = shape.member if isinstance(step, int) else shape.members[step]
    return shape


def emulated() -> list[OperationModel]:
    """The model operations whose method and path route in agentcore_local's route table."""
    session = botocore.session.get_session()
    found = []
    for service in SERVICES:
        model = session.get_service_model(service)
        for name in model.operation_names:
            op = model.operation_model(name)
            path = re.sub(r"\{[^}]+\}", "x", op.http["requestUri"].split("?")[0])
            scope = {"type": "http", "path": path, "method": op.http["method"]}
            if any(route.matches(scope)[0] is Match.FULL for route in urls.routes):
                found.append(op)
    return found


def send(url: str, op: OperationModel, params: dict[str, Any], case: Case | None = None) -> httpx.Response:
    serializer = create_serializer(op.metadata["protocol"], include_validation=False)
    try:
        if case is not None and case.label in WRONG_TYPES:
            raise TypeError(case.label)  # botocore would coerce or refuse it
        request = serializer.serialize_to_request(params, op)
    except (AttributeError, TypeError, ValueError):
        # A wrong JSON type botocore will not serialize: serialize a valid value, then put it in the body.
        assert case is not None and case.path
        leaf = shape_at(op.input_shape, case.path)
        request = serializer.serialize_to_request(
            set_at(params, op.input_shape, case.path, value_of(leaf)), op
        )
        document = json.loads(request["body"])
        steps = case.path[1:] if op.input_shape.serialization.get("payload") else case.path
        if not steps:
            document = case.value
        else:
            node = document
            for step in steps[:-1]:
                node = node[step]
            node[steps[-1]] = case.value
        request["body"] = json.dumps(document).encode()
    body = request["body"]
    return HTTP.request(
        request["method"],
        url + request["url_path"],
        params=request["query_string"],
        headers={k: str(v) for k, v in request["headers"].items()},
        content=body if isinstance(body, bytes) else body.encode(),
        timeout=30,
    )


def base_params(op: OperationModel) -> dict[str, Any]:
    params = value_of(op.input_shape)
    for name, member in op.input_shape.members.items():
        if member.name == "AgentRuntimeId":
            params[name] = GHOST_ID
    if "agentRuntimeArn" in params:  # data plane: a made-up runtime, so no sandbox starts
        params["agentRuntimeArn"] = f"arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/{GHOST_ID}"
    return params


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("walk")) as runtime:
        yield runtime


def test_every_boundary_value_of_every_emulated_operation_gets_awss_answer(local: LocalRuntime) -> None:
    operations = emulated()
    assert len(operations) >= 8
    checks, mismatches, ruled, bad_answers = 0, [], [], []
    for op in operations:
        for case in cases_for(op, lambda op=op: base_params(op)):
            checks += 1
            try:
                answer = send(local.url, op, case.params, case)
            except httpx.HTTPError as error:  # the server dropped the connection (a 500 mid-way)
                mismatches.append(f"{case.operation} {case.field} {case.label}: no answer ({error!r})")
                continue
            error = answer.headers.get("x-amzn-ErrorType", "") if answer.status_code >= 400 else ""
            refused = error == "ValidationException"
            if case.valid and refused and "failed to satisfy constraint" not in answer.text:
                ruled.append((case.operation, case.field, case.label, answer.json()["message"][:120]))
                if not any(case.operation == o and case.field.startswith(f) for o, f in HAND_RULES):
                    mismatches.append(f"{case.operation} {case.field} {case.label}: refused by a rule")
            elif refused == case.valid:
                got = f"{answer.status_code} {error or answer.text[:80]}"
                mismatches.append(f"{case.operation} {case.field} {case.label}: {got}")
            if answer.status_code < 300 and answer.headers.get("content-type") == "application/json":
                bad_answers += [f"{case.operation}: {p}" for p in check_output(op, answer.json())]
    print(
        f"\nmodel walk: {len(operations)} operations, {checks} checks, {len(mismatches)} mismatches, "
        f"{len(ruled)} model-valid values refused by a documented rule"
    )
    print("\n".join(mismatches))
    assert not mismatches
    assert not bad_answers
    assert checks > 300


def test_every_answer_of_a_runtimes_life_fits_the_output_shapes(local: LocalRuntime) -> None:
    """Create, read, list, endpoint and tag a runtime, then delete it: each JSON answer fits its shape."""
    ops = {op.name: op for op in emulated()}
    name = FRESH["AgentRuntimeName"]()
    artifact = {"containerConfiguration": {"containerUri": FRESH["RuntimeContainerUri"]()}}
    config = {"agentRuntimeArtifact": artifact, "roleArn": FRESH["RoleArn"]()}
    steps: list[tuple[str, dict[str, Any]]] = [("CreateAgentRuntime", {"agentRuntimeName": name, **config})]
    problems: list[str] = []
    runtime_id = arn = ""
    for op_name, params in steps:
        answer = send(local.url, ops[op_name], params)
        assert answer.status_code < 300, answer.text
        runtime_id, arn = answer.json()["agentRuntimeId"], answer.json()["agentRuntimeArn"]
    local.clock.advance(5)
    later = [
        ("GetAgentRuntime", {"agentRuntimeId": runtime_id}),
        ("UpdateAgentRuntime", {"agentRuntimeId": runtime_id, **config}),
        ("ListAgentRuntimes", {}),
        ("ListAgentRuntimeVersions", {"agentRuntimeId": runtime_id}),
        ("CreateAgentRuntimeEndpoint", {"agentRuntimeId": runtime_id, "name": "walked"}),
        ("GetAgentRuntimeEndpoint", {"agentRuntimeId": runtime_id, "endpointName": "DEFAULT"}),
        ("ListAgentRuntimeEndpoints", {"agentRuntimeId": runtime_id}),
        ("TagResource", {"resourceArn": arn, "tags": {"k": "v"}}),
        ("ListTagsForResource", {"resourceArn": arn}),
        ("UntagResource", {"resourceArn": arn, "tagKeys": ["k"]}),
        ("DeleteAgentRuntimeEndpoint", {"agentRuntimeId": runtime_id, "endpointName": "walked"}),
        ("DeleteAgentRuntime", {"agentRuntimeId": runtime_id, "agentRuntimeVersion": "1"}),
        ("DeleteAgentRuntime", {"agentRuntimeId": runtime_id}),
    ]
    for op_name, params in later:
        if op_name not in ops:
            problems.append(f"{op_name}: not emulated")
            continue
        if op_name == "UpdateAgentRuntimeEndpoint":
            local.clock.advance(5)
        answer = send(local.url, ops[op_name], params)
        if answer.status_code >= 300:
            problems.append(f"{op_name}: {answer.status_code} {answer.text[:200]}")
            continue
        assert answer.headers.get("x-amzn-RequestId"), op_name
        if answer.content:
            problems += [f"{op_name}: {p}" for p in check_output(ops[op_name], json.loads(answer.content))]
        local.clock.advance(5)
    assert not problems, "\n".join(problems)
