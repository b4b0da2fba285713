/**
 * A `policy test` file: the policy it tests, and cases, each a probe (an exec, an open, a connect, a bind),
 * the verdict the candidate must give it, and fields its event must carry. Parsed with positions, so that
 * a bad file is an InputError naming FILE:LINE:COL; and judged here, purely, from what a probe got.
 */
import { InputError, type Position } from "../errors.ts";
import { cidrProblem } from "./schema.ts";
import { yaml } from "./yaml.ts";

export const VERDICTS = ["allow", "deny", "audit"] as const;
export type Verdict = (typeof VERDICTS)[number];

/** What a case does, in the product's words. */
export type Probe =
  | { kind: "exec"; path: string; args: string[] }
  | { kind: "open"; path: string; write: boolean }
  | { kind: "connect"; host: string; port: number; protocol: "tcp" | "udp" }
  | { kind: "bind"; port: number; protocol: "tcp" | "udp" };

export type TestCase = {
  name: string;
  probe: Probe;
  as?: { uid: number; gid: number };
  expect: Verdict;
  /** Fields the case's event must carry (a subset of the event's JSON); none for `allow`. */
  event?: Record<string, unknown>;
  position: Position;
};

export type PolicyTestFile = {
  file: string;
  /** The policy or bundle, resolved against the test file's directory. */
  policy: string;
  /** Tests the policy as if its spec.mode were this. */
  mode?: "audit" | "enforce";
  cases: TestCase[];
};

/** The areas of the data plane a probe goes through. */
export function probeAreas(probe: Probe): ("file" | "exec" | "egress" | "bind")[] {
  switch (probe.kind) {
    case "exec":
      return ["exec", "file"];
    case "open":
      return ["file"];
    case "connect":
      return ["egress"];
    case "bind":
      return ["bind"];
  }
}

/** `connect 169.254.169.254:80/tcp`, `exec /usr/bin/nc -h`, `open /etc/shadow (write)`. */
export function describeProbe(probe: Probe): string {
  switch (probe.kind) {
    case "exec":
      return ["exec", probe.path, ...probe.args].join(" ");
    case "open":
      return `open ${probe.path}${probe.write ? " (write)" : ""}`;
    case "connect":
      return `connect ${
        probe.host.includes(":") ? `[${probe.host}]` : probe.host
      }:${probe.port}/${probe.protocol}`;
    case "bind":
      return `bind ${probe.port}/${probe.protocol}`;
  }
}

const TOP_KEYS = ["policy", "mode", "cases"];
const PROBE_KEYS = ["exec", "open", "connect", "bind"];
const CASE_KEYS = [...PROBE_KEYS, "name", "args", "write", "protocol", "as", "expect", "event"];
const MAX_CASES = 1000;

type Node = { range?: [number, number, number] | null };
type YamlMap = Node & { items: { key: Node & { value?: unknown }; value: unknown }[] };

/** Parses the test file `text` read from `file`; a bad one is an InputError naming FILE:LINE:COL. */
export function parsePolicyTest(text: string, file: string): PolicyTestFile {
  const { LineCounter, isMap, isSeq, isScalar } = yaml();
  const lines = new LineCounter();
  const doc = yaml().parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (node: unknown): Position => {
    const offset = (node as Node | undefined)?.range?.[0];
    if (offset === undefined) return { file };
    const { line, col } = lines.linePos(offset);
    return { file, line, column: col };
  };
  const fail = (node: unknown, message: string): never => {
    throw new InputError(message, { position: at(node) });
  };
  const [problem] = doc.errors;
  if (problem) {
    const { line, col } = lines.linePos(problem.pos[0]);
    throw new InputError(`not valid YAML: ${problem.message.split("\n")[0]}`, {
      position: { file, line, column: col },
    });
  }
  const top = doc.contents;
  if (!isMap(top)) return fail(top, "a policy test file is a map with policy: and cases:");
  const entries = (map: YamlMap, allowed: readonly string[], what: string) => {
    const found = new Map<string, { key: unknown; value: unknown }>();
    for (const item of map.items) {
      const name = isScalar(item.key) ? String(item.key.value) : "";
      if (!allowed.includes(name)) {
        fail(
          item.key,
          `unknown key ${JSON.stringify(name)} in ${what}; expected one of: ${allowed.join(", ")}`,
        );
      }
      found.set(name, { key: item.key, value: item.value });
    }
    return found;
  };
  const string = (value: unknown, what: string): string => {
    if (!isScalar(value) || typeof value.value !== "string" || value.value === "") {
      return fail(value, `${what} must be a non-empty string`);
    }
    return value.value;
  };
  const integer = (value: unknown, what: string, min: number, max: number): number => {
    const n = isScalar(value) ? value.value : undefined;
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
      return fail(value, `${what} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
  const top_ = entries(top as unknown as YamlMap, TOP_KEYS, "the test file");
  const policy = top_.get("policy");
  if (!policy) return fail(top, "missing policy: the policy or bundle to test, relative to this file");
  const policyPath = string(policy.value, "policy");
  const mode = top_.get("mode");
  const modeValue = mode === undefined ? undefined : string(mode.value, "mode");
  if (modeValue !== undefined && modeValue !== "audit" && modeValue !== "enforce") {
    fail(mode!.value, `mode must be audit or enforce, not ${JSON.stringify(modeValue)}`);
  }
  const cases = top_.get("cases");
  if (!cases || !isSeq(cases.value) || cases.value.items.length === 0) {
    return fail(cases?.value ?? top, "cases: must list at least one case");
  }
  if (cases.value.items.length > MAX_CASES) fail(cases.value, `at most ${MAX_CASES} cases per file`);
  const parsed = cases.value.items.map((item, index) => {
    if (!isMap(item)) return fail(item, `case ${index + 1} must be a map with a probe and expect:`);
    const keys = entries(item as unknown as YamlMap, CASE_KEYS, `case ${index + 1}`);
    const probes = PROBE_KEYS.filter((key) => keys.has(key));
    if (probes.length !== 1) {
      return fail(item, `case ${index + 1} needs exactly one probe: ${PROBE_KEYS.join(", ")}`);
    }
    const kind = probes[0]!;
    const value = keys.get(kind)!.value;
    const only = (key: string, kinds: string[]) => {
      const found = keys.get(key);
      if (found && !kinds.includes(kind)) fail(found.key, `${key}: applies to ${kinds.join(" and ")} only`);
      return found?.value;
    };
    const argsNode = only("args", ["exec"]);
    const writeNode = only("write", ["open"]);
    const protocolNode = only("protocol", ["connect", "bind"]);
    const protocol = protocolNode === undefined ? "tcp" : string(protocolNode, "protocol");
    if (protocol !== "tcp" && protocol !== "udp") fail(protocolNode, "protocol must be tcp or udp");
    let probe: Probe;
    if (kind === "exec" || kind === "open") {
      const path = string(value, kind);
      if (!path.startsWith("/")) fail(value, `${kind}: must be an absolute path`);
      if (kind === "exec") {
        if (argsNode !== undefined && !isSeq(argsNode)) fail(argsNode, "args must be a list of strings");
        const args = argsNode === undefined ? [] : (argsNode as { items: unknown[] }).items.map((arg) => {
          if (!isScalar(arg) || arg.value === null || typeof arg.value === "object") {
            return fail(arg, "args must be a list of strings");
          }
          return String(arg.value);
        });
        probe = { kind, path, args };
      } else {
        const write = writeNode === undefined ? false : isScalar(writeNode) ? writeNode.value : undefined;
        if (typeof write !== "boolean") return fail(writeNode, "write must be true or false");
        probe = { kind, path, write };
      }
    } else if (kind === "connect") {
      const target = string(value, "connect");
      const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
      const host = match?.[1] ?? match?.[2];
      if (!match || host === undefined || cidrProblem(host) !== undefined) {
        return fail(value, `connect: must be ADDRESS:PORT (an IPv6 address in brackets), not ${target}`);
      }
      const port = Number(match[3]);
      if (port < 1 || port > 65535) fail(value, "connect: the port must be from 1 to 65535");
      probe = { kind, host, port, protocol: protocol as "tcp" | "udp" };
    } else {
      probe = { kind: "bind", port: integer(value, "bind", 1, 65535), protocol: protocol as "tcp" | "udp" };
    }
    const expectNode = keys.get("expect");
    if (!expectNode) return fail(item, `case ${index + 1} needs expect: ${VERDICTS.join(", ")}`);
    const expect = string(expectNode.value, "expect");
    if (!(VERDICTS as readonly string[]).includes(expect)) {
      fail(expectNode.value, `expect must be ${VERDICTS.join(", ")}, not ${JSON.stringify(expect)}`);
    }
    const test: TestCase = {
      name: keys.has("name") ? string(keys.get("name")!.value, "name") : describeProbe(probe),
      probe,
      expect: expect as Verdict,
      position: at(item),
    };
    const asNode = keys.get("as");
    if (asNode) {
      if (!isMap(asNode.value)) return fail(asNode.value, "as: must be a map { uid, gid }");
      const ids = entries(asNode.value as unknown as YamlMap, ["uid", "gid"], "as");
      const uid = integer(ids.get("uid")?.value ?? asNode.value, "as.uid", 0, 0xffff_fffe);
      const gid = ids.has("gid") ? integer(ids.get("gid")!.value, "as.gid", 0, 0xffff_fffe) : uid;
      test.as = { uid, gid };
    }
    const eventNode = keys.get("event");
    if (eventNode) {
      if (expect === "allow") {
        fail(eventNode.key, "event: an allowed probe has no event; remove it or expect deny/audit");
      }
      if (!isMap(eventNode.value)) return fail(eventNode.value, "event: must be a map of event fields");
      test.event = (eventNode.value as { toJSON(): Record<string, unknown> }).toJSON();
    }
    return test;
  });
  return {
    file,
    policy: policyPath.startsWith("/") ? policyPath : `${dirOf(file)}/${policyPath}`,
    ...(modeValue === undefined ? {} : { mode: modeValue as "audit" | "enforce" }),
    cases: parsed,
  };
}

function dirOf(file: string): string {
  const slash = file.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : file.slice(0, slash);
}

/** What a probe got: whether the kernel let it through (or the errno that stopped it), and its events. */
export type ProbeOutcome = {
  /** "ok", or the errno name that stopped it ("EPERM"), or another failure's text. */
  result: string;
  events: Record<string, unknown>[];
};

export type CaseResult = {
  name: string;
  probe: string;
  status: "pass" | "fail" | "skipped";
  expected: { verdict: Verdict; event?: Record<string, unknown> };
  got?: { verdict: Verdict | "error"; result: string; event?: Record<string, unknown> };
  /** One line per difference, expected against got. */
  diff?: string[];
  /** Why a case was skipped. */
  reason?: string;
};

/**
 * The verdict a probe got from the candidate: `deny` when the kernel refused it with EPERM and the candidate
 * said so, `audit` when it went through with an audit event, `allow` when it went through without one.
 * Refused with no event of the candidate: `error` (something else refused it: the live policy, another LSM);
 * a probe that failed otherwise (no such file, no answer from the probe): `error` too.
 */
export function verdictOf(
  outcome: ProbeOutcome,
): { verdict: Verdict | "error"; event?: Record<string, unknown> } {
  const deny = outcome.events.find((event) => event.decision === "deny");
  const audit = outcome.events.find((event) => event.decision === "audit");
  const refused = outcome.result === "EPERM" || outcome.result === "EACCES";
  if (refused && deny) return { verdict: "deny", event: deny };
  if (refused) return { verdict: "error" };
  if (deny) return { verdict: "error", event: deny };
  if (outcome.result !== "ok") return { verdict: "error" }; // the probe itself failed (no such file, ...)
  if (audit) return { verdict: "audit", event: audit };
  return { verdict: "allow" };
}

/** Judges one case from its outcome. */
export function judgeCase(test: TestCase, outcome: ProbeOutcome): CaseResult {
  const { verdict, event } = verdictOf(outcome);
  const diff: string[] = [];
  if (verdict !== test.expect) {
    const why = verdict === "error"
      ? outcome.result === "ok" || outcome.result === "EPERM"
        ? ` (${outcome.result}, ${
          event
            ? "with a deny event: the event and the result disagree"
            : "with no event of the candidate: refused by something else, the live policy or another security module"
        })`
        : ` (${outcome.result})`
      : "";
    diff.push(`verdict: expected ${test.expect}, got ${verdict}${why}`);
  }
  for (const [key, want] of Object.entries(test.event ?? {})) {
    const got = event?.[key];
    if (!matches(want, got)) {
      diff.push(
        `event.${key}: expected ${JSON.stringify(want)}, got ${
          got === undefined ? "nothing" : JSON.stringify(got)
        }`,
      );
    }
  }
  return {
    name: test.name,
    probe: describeProbe(test.probe),
    status: diff.length === 0 ? "pass" : "fail",
    expected: { verdict: test.expect, ...(test.event ? { event: test.event } : {}) },
    got: { verdict, result: outcome.result, ...(event ? { event } : {}) },
    ...(diff.length > 0 ? { diff } : {}),
  };
}

/** `want` is in `got`: equal scalars and lists, and maps whose every key `want` names match. */
function matches(want: unknown, got: unknown): boolean {
  if (Array.isArray(want)) {
    return Array.isArray(got) && want.length === got.length && want.every((w, i) => matches(w, got[i]));
  }
  if (want !== null && typeof want === "object") {
    if (got === null || typeof got !== "object") return false;
    return Object.entries(want).every(([key, w]) => matches(w, (got as Record<string, unknown>)[key]));
  }
  return want === got || (typeof got === "number" && String(got) === String(want));
}
