/**
 * The agent reads, checks and compiles every policy in a short-lived process of its own, and keeps only the
 * result: the policy's identity and text, the plan with its CIDR rules encoded as map entries, and a
 * compact rule table. V8 never hands the peak of a parse back to the system, and a fleet policy of 100,000
 * rules peaks at hundreds of MB while it is parsed, validated and compiled; a process that lives for
 * months must not keep that peak. The check is the same code either way (`readAgentPolicy`, `planFor`).
 *
 * The local API's applies and rollbacks run whole in the same kind of helper, through the commands' own
 * path (`applyRawInput`, `rollbackTo`), for the same reason.
 *
 * The helper is this program run again with `__prepare` as its only argument (`preparePolicyMain`): the
 * request comes on stdin as JSON; the answer goes to stdout as one JSON line, followed for a prepared
 * policy by its entries' bytes and its text. An error (bad input, a refusal) comes back as the same class
 * with the same message, so exit codes and HTTP statuses are what they would be in process.
 */

import { concatBytes } from "../../ffi/bytes.ts";
import { InputError, type Position, RefusedError } from "../errors.ts";
import { encodeNetRules } from "../kernel/entries.ts";
import { storedPolicy } from "../state/apply_state.ts";
import { listHistory } from "../state/history.ts";
import type { RuleInfo, RuleSetPlan } from "../policy/plan.ts";
import { RuleTable, type RuleTableData } from "../policy/rule_table.ts";
import type { ApplyInput } from "./apply.ts";
// The helper's side (the policy parsers, the commands' apply path) loads only in the helper: the agent,
// which imports this module to ask, never pays for it.
import type { AppliedSummary, Where } from "./apply_text.ts";
import type { PolicyChoice, PolicyOrigin, SourcedPolicy } from "./policy_source.ts";
import { planFor } from "./run_checks.ts";
import { HelperProcess } from "./helper_process.ts";

export { PREPARE_ARGUMENT } from "./helper_process.ts";

/**
 * What the agent asks for: the policy `run` applies (see policy_source.ts), or a history entry's; or, for
 * the local API, an apply or rollback done whole in the helper (the commands' path), answering its summary.
 */
export type HelperRequest =
  | PrepareRequest
  | { what: "api-apply"; where: Where; text: string; source: string }
  | { what: "api-rollback"; where: Where; to?: string };

export type PrepareRequest =
  | {
    what: "agent";
    /** A start or a SIGHUP: `--policy FILE` at start always wins (see policy_source.ts). */
    why: "start" | "reload";
    configDir: string;
    stateDir: string;
    policyFile?: string;
    requestedMode?: "audit" | "enforce";
    ingress: string[];
  }
  | { what: "stored"; stateDir: string; seq: number };

/** A checked, compiled policy as the agent holds it. */
export type PreparedPolicy = {
  /** With the text to record in history; empty for a history entry (`stored`), which is only read. */
  input: ApplyInput;
  origin: PolicyOrigin;
  /** Set when the file was kept out for a newer policy in force, or replaced one (policy_source.ts). */
  choice?: PolicyChoice;
  /** The plan with `encodedNet` (see plan.ts): no CIDR rule objects. */
  plan: RuleSetPlan;
  rules: RuleTable;
};

/** The answer's first line; then the entries' keys, their values, and the policy's text as UTF-8. */
type Header = {
  input: Omit<ApplyInput, "content">;
  contentBytes: number;
  origin: PolicyOrigin;
  choice?: PolicyChoice;
  plan: Omit<RuleSetPlan, "rules" | "encodedNet" | "nat64Prefixes"> & { nat64Prefixes?: number[][] };
  rules: RuleTableData;
  net: { count: number; keyBytes: number; valueBytes: number; egressRules: number; ingressRules: number };
  ingressPortDenies: number;
};

type Answered = { result: unknown };

type Failure = { error: { kind: "input" | "refused" | "other"; message: string; position?: Position } };

/**
 * How long a check may take before the helper is killed: a start or SIGHUP must not hang on it. (An API
 * apply has none: it may wait for the state lock behind a canary, and the client has its own timeout.)
 */
export const PREPARE_TIMEOUT_MS = 120_000;

/**
 * Prepares a policy in a helper process (`started`, when one was started ahead: see helper_process.ts);
 * rethrows the helper's error as it was thrown there.
 */
export function preparePolicy(request: PrepareRequest, started?: HelperProcess): Promise<PreparedPolicy> {
  return inHelper(request, readAnswer, PREPARE_TIMEOUT_MS, started);
}

/** `policy apply` of a body the local API received, in a helper: its summary, or its error. */
export function applyInHelper(where: Where, text: string, source: string): Promise<AppliedSummary> {
  return inHelper({ what: "api-apply", where, text, source }, readResult) as Promise<AppliedSummary>;
}

/** `policy rollback [--to REF]` for the local API, in a helper. */
export function rollbackInHelper(
  where: Where,
  to: string | undefined,
): Promise<AppliedSummary & { restoredSeq: number }> {
  const request: HelperRequest = { what: "api-rollback", where, ...to !== undefined && { to } };
  return inHelper(request, readResult) as Promise<AppliedSummary & { restoredSeq: number }>;
}

async function readResult(stdout: StreamReader): Promise<unknown> {
  const line = await stdout.line();
  if (line === undefined) throw new Error("no answer");
  const answer = JSON.parse(line) as Answered | Failure;
  if ("error" in answer) throw rebuildError(answer.error);
  return answer.result;
}

async function inHelper<T>(
  request: HelperRequest,
  read: (stdout: StreamReader) => Promise<T>,
  timeoutMs?: number,
  started?: HelperProcess,
): Promise<T> {
  const child = started?.take() ?? HelperProcess.spawn().take()!;
  let timedOut = false;
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    try {
      child.kill("SIGKILL");
      timedOut = true;
    } catch {
      // It ended meanwhile.
    }
  }, timeoutMs);
  const stderr = new Response(child.stderr).text();
  const stdout = new StreamReader(child.stdout);
  let answer: T | Error;
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(request)));
    await writer.close();
    answer = await read(stdout);
  } catch (error) {
    answer = error instanceof Error ? error : new Error(String(error));
  } finally {
    await stdout.cancel();
  }
  const { code } = await child.status;
  clearTimeout(timer);
  if (timedOut) throw new Error(`the policy check process did not answer within ${timeoutMs! / 1000} s`);
  if (answer instanceof Error && !(answer instanceof InputError || answer instanceof RefusedError)) {
    const said = (await stderr).trim().split("\n").slice(-3).join("; ");
    throw new Error(
      `the policy check process failed (exit ${code}): ${answer.message}${said ? `; ${said}` : ""}`,
    );
  }
  if (answer instanceof Error) throw answer;
  return answer;
}

/** Reads the header line, then the entries straight into buffers of their size (no copy of the whole). */
async function readAnswer(stdout: StreamReader): Promise<PreparedPolicy> {
  const line = await stdout.line();
  if (line === undefined) throw new Error("no answer");
  const header = JSON.parse(line) as Header | Failure;
  if ("error" in header) throw rebuildError(header.error);
  const keys = await stdout.exactly(header.net.keyBytes);
  const values = await stdout.exactly(header.net.valueBytes);
  const content = new TextDecoder().decode(await stdout.exactly(header.contentBytes));
  return fromHeader(header, keys, values, content);
}

/**
 * A byte stream read as one text line and then runs of exact length, each read straight into a buffer of
 * its size (a BYOB reader): megabytes of entries leave no trail of chunks behind for the collector.
 */
class StreamReader {
  readonly #reader: ReadableStreamBYOBReader;
  #pending: Uint8Array = new Uint8Array(0);

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader({ mode: "byob" });
  }

  async line(): Promise<string | undefined> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const newline = this.#pending.indexOf(10);
      if (newline >= 0) {
        parts.push(this.#pending.subarray(0, newline));
        this.#pending = this.#pending.subarray(newline + 1);
        return new TextDecoder().decode(concatBytes(parts));
      }
      parts.push(this.#pending);
      const next = await this.#reader.read(new Uint8Array(64 * 1024));
      if (next.done) return undefined;
      this.#pending = next.value;
    }
  }

  async exactly(length: number): Promise<Uint8Array<ArrayBuffer>> {
    let bytes = new Uint8Array(length);
    let filled = Math.min(length, this.#pending.length);
    bytes.set(this.#pending.subarray(0, filled));
    this.#pending = this.#pending.subarray(filled);
    while (filled < length) {
      const next = await this.#reader.read(new Uint8Array(bytes.buffer, filled, length - filled));
      if (next.done) throw new Error(`the answer ends after ${filled} of ${length} bytes`);
      // The reader hands the buffer back transferred: the same memory, a new ArrayBuffer.
      bytes = new Uint8Array(next.value.buffer as ArrayBuffer);
      filled += next.value.length;
    }
    return bytes;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

/** The helper's side: answers one request on stdout. Returns the exit code. */
export async function preparePolicyMain(): Promise<number> {
  let answer: Uint8Array[];
  let code = 0;
  try {
    const request = JSON.parse(await new Response(Deno.stdin.readable).text()) as HelperRequest;
    answer = await answerHere(request);
  } catch (error) {
    answer = [new TextEncoder().encode(JSON.stringify(failureOf(error)) + "\n")];
    code = 1;
  }
  for (const part of answer) {
    for (let written = 0; written < part.length;) written += await Deno.stdout.write(part.subarray(written));
  }
  return code;
}

async function answerHere(request: HelperRequest): Promise<Uint8Array[]> {
  const line = (result: unknown) => [new TextEncoder().encode(JSON.stringify({ result }) + "\n")];
  switch (request.what) {
    case "api-apply": {
      const { applyRawInput } = await import("./apply_text.ts");
      const { where, text, source } = request;
      return line(await applyRawInput(where, { source, text, bytes: new TextEncoder().encode(text) }));
    }
    case "api-rollback":
      return line(await (await import("./apply_text.ts")).rollbackTo(request.where, request.to));
    default:
      return toAnswer(await prepareHere(request));
  }
}

/** The work itself, in this process (the helper calls it; tests may too). */
export async function prepareHere(request: PrepareRequest): Promise<PreparedPolicy> {
  const { readAgentPolicy, storedInput } = await import("./policy_source.ts");
  let sourced: SourcedPolicy;
  let plan: RuleSetPlan;
  if (request.what === "agent") {
    sourced = await readAgentPolicy(request, request.policyFile, request.why);
    plan = planFor(sourced, request);
  } else {
    const entry = listHistory(request.stateDir).find((candidate) => candidate.seq === request.seq);
    if (!entry) throw new InputError(`history has no entry ${request.seq}`);
    sourced = { input: storedInput(storedPolicy(request.stateDir, entry)), origin: "applied" };
    plan = planFor(sourced, { configDir: "", ingress: [] });
  }
  const { source, kind, content, sha256, keyid } = sourced.input;
  const { name, version } = sourced.input.parsed.policy.metadata;
  const input: ApplyInput = {
    source,
    kind,
    // A history entry is only read, never applied again from here: its text stays in history.
    content: request.what === "stored" ? "" : content,
    sha256,
    name,
    version,
    ...keyid !== undefined && { keyid },
  };
  const rules = RuleTable.of(plan.rules);
  const choice = sourced.choice && { choice: sourced.choice };
  return { input, origin: sourced.origin, ...choice, plan: compactPlan(plan, rules), rules };
}

/**
 * The plan with its CIDR rules encoded and dropped, and `rules` holding only what the rule table keeps
 * apart (file and exec rules with their paths, written ids): a sparse array, indexed by rule id.
 */
export function compactPlan(plan: RuleSetPlan, table = RuleTable.of(plan.rules)): RuleSetPlan {
  const rules = sparseRules(table);
  return {
    ...plan,
    rules,
    egress: [],
    ingress: { ...plan.ingress, rules: [] },
    encodedNet: encodeNetRules(plan),
  };
}

function sparseRules(table: RuleTable): RuleInfo[] {
  const rules: RuleInfo[] = [];
  rules.length = table.size;
  for (const [ruleId, rule] of table.toJSON().single) rules[ruleId] = rule;
  return rules;
}

function toAnswer(prepared: PreparedPolicy): Uint8Array[] {
  const { rules: _rules, encodedNet, nat64Prefixes, ...plan } = prepared.plan;
  const net = encodedNet!;
  const { content, ...input } = prepared.input;
  const text = new TextEncoder().encode(content);
  const header: Header = {
    input,
    contentBytes: text.length,
    origin: prepared.origin,
    ...prepared.choice && { choice: prepared.choice },
    plan: { ...plan, ...nat64Prefixes && { nat64Prefixes: nat64Prefixes.map((prefix) => [...prefix]) } },
    rules: prepared.rules.toJSON(),
    net: {
      count: net.count,
      keyBytes: net.keys.length,
      valueBytes: net.values.length,
      egressRules: net.egressRules,
      ingressRules: net.ingressRules,
    },
    ingressPortDenies: net.ingressPortDenies,
  };
  return [new TextEncoder().encode(JSON.stringify(header) + "\n"), net.keys, net.values, text];
}

function fromHeader(
  header: Header,
  keys: Uint8Array<ArrayBuffer>,
  values: Uint8Array<ArrayBuffer>,
  content: string,
): PreparedPolicy {
  const { net } = header;
  const rules = RuleTable.fromJSON(header.rules);
  const { nat64Prefixes, ...plan } = header.plan;
  return {
    input: { ...header.input, content },
    origin: header.origin,
    ...header.choice && { choice: header.choice },
    rules,
    plan: {
      ...plan,
      ...nat64Prefixes && { nat64Prefixes: nat64Prefixes.map((prefix) => new Uint8Array(prefix)) },
      rules: sparseRules(rules),
      encodedNet: {
        keys,
        values,
        count: net.count,
        egressRules: net.egressRules,
        ingressRules: net.ingressRules,
        ingressPortDenies: header.ingressPortDenies,
      },
    },
  };
}

function failureOf(error: unknown): Failure {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof InputError) {
    return { error: { kind: "input", message, ...error.position && { position: error.position } } };
  }
  return { error: { kind: error instanceof RefusedError ? "refused" : "other", message } };
}

function rebuildError({ kind, message, position }: Failure["error"]): Error {
  if (kind === "input") return new InputError(message, position ? { position } : {});
  return kind === "refused" ? new RefusedError(message) : new Error(message);
}
