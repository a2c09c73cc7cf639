// agentcore_local driven by a second implementation of the AWS APIs: the AWS SDK for JavaScript v3.
// Run by tests/e2e/local/test_js_sdk_conformance.py, which starts agentcore_local and sets
// AWS_ENDPOINT_URL_BEDROCK_AGENTCORE(_CONTROL), SCRIPTED_PLAN and a region; the SDK reads the
// endpoint variables itself, as it would for any AWS endpoint.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import {
  BedrockAgentCoreClient,
  InvokeAgentRuntimeCommand,
  InvokeAgentRuntimeCommandCommand,
  ResourceNotFoundException as DataNotFound,
  RetryableConflictException,
  RuntimeClientError,
  StopRuntimeSessionCommand,
  ValidationException as DataValidation,
} from "@aws-sdk/client-bedrock-agentcore";
import {
  BedrockAgentCoreControlClient,
  ConflictException,
  CreateAgentRuntimeCommand,
  DeleteAgentRuntimeCommand,
  GetAgentRuntimeCommand,
  GetAgentRuntimeEndpointCommand,
  ListTagsForResourceCommand,
  ResourceNotFoundException,
  ValidationException,
} from "@aws-sdk/client-bedrock-agentcore-control";

const IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/coding-agent:js";
const ROLE = "arn:aws:iam::123456789012:role/AgentCoreRuntimeRole";
const control = new BedrockAgentCoreControlClient({ maxAttempts: 1 });
const data = new BedrockAgentCoreClient({ maxAttempts: 1 });
const sessionId = () => `js-${randomUUID()}`;
const decoder = new TextDecoder();

async function rejects(promise, type) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `${error.name}: ${error.message} is not a ${type.name}`);
    assert.match(error.$metadata.requestId ?? "", /^[0-9a-f-]{36}$/);
    return error;
  }
  assert.fail(`expected ${type.name}`);
}

async function send(arn, session, body, extra = {}) {
  return data.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn: arn,
      runtimeSessionId: session,
      payload: new TextEncoder().encode(JSON.stringify(body)),
      ...extra,
    }),
  );
}

async function invoke(arn, session, body, extra = {}) {
  const answer = await send(arn, session, body, extra);
  return { answer, text: await answer.response.transformToString() };
}

async function exec(arn, session, command) {
  const answer = await data.send(
    new InvokeAgentRuntimeCommandCommand({
      agentRuntimeArn: arn,
      runtimeSessionId: session,
      body: { command, timeout: 60 },
    }),
  );
  const events = [];
  for await (const event of answer.stream) events.push(event.chunk);
  return events;
}

// The tests run in order and share one session after the first (each new session is a sandbox start).
describe("agentcore_local through the AWS SDK for JavaScript v3", () => {
  let arn, runtimeId;
  const session = sessionId();

  before(async () => {
    const created = await control.send(
      new CreateAgentRuntimeCommand({
        agentRuntimeName: `js_${randomUUID().slice(0, 8)}`,
        agentRuntimeArtifact: { containerConfiguration: { containerUri: IMAGE } },
        roleArn: ROLE,
        filesystemConfigurations: [{ sessionStorage: { mountPath: "/mnt/workspace" } }],
        environmentVariables: { MODEL_PROVIDER: "scripted", SCRIPTED_PLAN: process.env.SCRIPTED_PLAN },
        tags: { suite: "js" },
      }),
    );
    ({ agentRuntimeArn: arn, agentRuntimeId: runtimeId } = created);
    assert.equal(created.status, "CREATING");
    assert.match(created.$metadata.requestId, /^[0-9a-f-]{36}$/);
    // A call while the runtime is provisioning is refused before it starts anything.
    await rejects(invoke(arn, sessionId(), { prompt: "too early" }), RetryableConflictException);
    for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
      const got = await control.send(new GetAgentRuntimeCommand({ agentRuntimeId: runtimeId }));
      if (got.status === "READY") break;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  });

  after(async () => {
    await control.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: runtimeId }));
  });

  it("answers a JSON invocation, then resumes files and history after a stop", async () => {
    const first = await invoke(arn, session, { prompt: "write the note" });
    assert.equal(first.answer.runtimeSessionId, session);
    assert.equal(JSON.parse(first.text).history.messages_before, 0);
    const stopped = await data.send(
      new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: session }),
    );
    assert.equal(stopped.runtimeSessionId, session);
    const second = JSON.parse((await invoke(arn, session, { prompt: "read the note" })).text);
    assert.match(second.response, /written in turn one/);
    assert.ok(second.history.messages_before > 0);
    assert.equal(second.workspace.restored, true);
  });

  it("streams an invocation as server-sent events", async () => {
    const answer = await send(
      arn,
      session,
      { prompt: "hello stream", stream: true },
      { accept: "text/event-stream", contentType: "application/json" },
    );
    assert.match(answer.contentType, /^text\/event-stream/);
    let text = "";
    for await (const chunk of answer.response) text += decoder.decode(chunk, { stream: true });
    const events = text
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .map((line) => JSON.parse(line.slice(6)));
    assert.equal(events.at(-1).type, "done");
    assert.match(events.at(-1).response ?? JSON.stringify(events.at(-1)), /hello stream/);
  });

  it("runs a command in the session and reads its event stream", async () => {
    const events = await exec(arn, session, "cat note.txt; echo oops >&2; exit 3");
    assert.deepEqual(events[0], { contentStart: {} });
    const stdout = events.map((e) => e.contentDelta?.stdout ?? "").join("");
    const stderr = events.map((e) => e.contentDelta?.stderr ?? "").join("");
    assert.match(stdout, /written in turn one/);
    assert.match(stderr, /oops/);
    assert.deepEqual(events.at(-1), { contentStop: { exitCode: 3, status: "COMPLETED" } });
  });

  it("raises each modelled error class", async () => {
    const validation = await rejects(invoke(arn, "short", { prompt: "x" }), DataValidation);
    assert.equal(validation.reason, "FieldValidationFailed");
    assert.equal(validation.fieldList[0].name, "runtimeSessionId");
    await rejects(invoke(arn, sessionId(), { prompt: "x" }, { qualifier: "nope" }), DataNotFound);
    await rejects(invoke(arn, session, { not: "a prompt" }), RuntimeClientError);
    await rejects(
      data.send(new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: sessionId() })),
      DataNotFound,
    );
    await rejects(control.send(new GetAgentRuntimeCommand({ agentRuntimeId: "ghost-AAAAAAAAAA" })), ResourceNotFoundException);
    await rejects(control.send(new GetAgentRuntimeCommand({ agentRuntimeId: "not an id" })), ValidationException);
    const name = (await control.send(new GetAgentRuntimeCommand({ agentRuntimeId: runtimeId }))).agentRuntimeName;
    await rejects(
      control.send(
        new CreateAgentRuntimeCommand({
          agentRuntimeName: name,
          agentRuntimeArtifact: { containerConfiguration: { containerUri: IMAGE } },
          roleArn: ROLE,
        }),
      ),
      ConflictException,
    );
  });

  it("shows the DEFAULT endpoint and the runtime's tags", async () => {
    const endpoint = await control.send(
      new GetAgentRuntimeEndpointCommand({ agentRuntimeId: runtimeId, endpointName: "DEFAULT" }),
    );
    assert.equal(endpoint.status, "READY");
    assert.equal(endpoint.liveVersion, "1");
    const tags = await control.send(new ListTagsForResourceCommand({ resourceArn: arn }));
    assert.deepEqual(tags.tags, { suite: "js" });
  });
});
