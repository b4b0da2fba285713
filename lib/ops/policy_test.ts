/**
 * `policy test`: a test file's cases run against its candidate policy in a throw-away data plane
 * (lib/kernel/test_plane.ts), never the live one. The candidate's scope is the plane's own temporary cgroup,
 * whatever the policy's says, so its BPF-LSM programs (global by nature) decide only the probes; the probe
 * children are moved into that cgroup before they act (lib/ops/probe_child.ts). Everything is detached and
 * removed at the end, on SIGINT and SIGTERM too.
 */
import { bootToWallOffsetNs, type EventContext, formatEvent } from "../kernel/events.ts";
import { resolvePlan } from "../kernel/resolve.ts";
import { TestPlane } from "../kernel/test_plane.ts";
import type { AreaStatus, DataPlane } from "../kernel/dataplane.ts";
import { compilePolicy } from "../policy/compile.ts";
import type { Area } from "../policy/plan.ts";
import { RuleTable } from "../policy/rule_table.ts";
import type { Policy } from "../policy/schema.ts";
import {
  type CaseResult,
  describeProbe,
  judgeCase,
  type PolicyTestFile,
  probeAreas,
  type ProbeOutcome,
  type TestCase,
} from "../policy/test_file.ts";
import type { RawEvent } from "../../ffi/mod.ts";
import { planAreas } from "./apply.ts";
import { selfCommand } from "./helper_process.ts";
import { PROBE_ARGUMENT, PROBE_TIMEOUT_MS, type ProbeReply } from "./probe_child.ts";

export type PolicyTestReport = {
  file: string;
  policy: { file: string; name: string; version: number; mode: "audit" | "enforce" };
  /** How each area the candidate uses runs in the throw-away plane on this kernel. */
  areas: Partial<Record<Area, AreaStatus>>;
  cases: CaseResult[];
  passed: number;
  failed: number;
  skipped: number;
};

/** The areas whose BPF-LSM programs did not load here: their cases are skipped, never guessed. */
const LSM_AREAS: readonly Area[] = ["file", "exec"];

/** Runs every case of `test` against `policy` (read from `policyFile`); `warn` hears optional paths missing. */
export async function runPolicyTest(
  test: PolicyTestFile,
  policy: Policy,
  policyFile: string,
  warn: (message: string) => void,
): Promise<PolicyTestReport> {
  using plane = TestPlane.create();
  const stop = stopOnSignals(plane);
  try {
    const mode = test.mode ?? policy.spec.mode;
    const scoped = { ...policy, spec: { ...policy.spec, mode, scope: { cgroups: [plane.cgroupRelative] } } };
    const plan = compilePolicy(scoped as Policy);
    const resolved = resolvePlan(plan, { warn });
    const areas = planAreas(plan);
    const data = plane.open(areas);
    await data.apply(resolved);
    const status: Partial<Record<Area, AreaStatus>> = {};
    for (const area of areas) status[area] = data.status[area];
    const table = RuleTable.of(plan.rules);
    const context: EventContext = {
      host: Deno.hostname(),
      generations: [{ rules: table }, { rules: table }],
      bootToWallNs: bootToWallOffsetNs(),
    };
    const results: CaseResult[] = [];
    const events = new EventCollector(data, context);
    try {
      for (const test_ of test.cases) {
        const skip = skipReason(test_, status);
        if (skip !== undefined) {
          results.push({
            name: test_.name,
            probe: describeProbe(test_.probe),
            status: "skipped",
            expected: { verdict: test_.expect, ...(test_.event ? { event: test_.event } : {}) },
            reason: skip,
          });
          continue;
        }
        events.take(); // nothing of an earlier case
        const reply = await runProbe(plane, test_);
        results.push(
          judgeCase(test_, { result: reply.result, events: events.take() } satisfies ProbeOutcome),
        );
      }
    } finally {
      events.close();
    }
    const { name, version } = policy.metadata;
    const count = (status: CaseResult["status"]) => results.filter((r) => r.status === status).length;
    return {
      file: test.file,
      policy: { file: policyFile, name, version, mode },
      areas: status,
      cases: results,
      passed: count("pass"),
      failed: count("fail"),
      skipped: count("skipped"),
    };
  } finally {
    stop();
  }
}

function skipReason(test: TestCase, status: Partial<Record<Area, AreaStatus>>): string | undefined {
  for (const area of probeAreas(test.probe)) {
    const area_ = status[area];
    if (area_ === undefined || area_.mode === "enforce") continue;
    return LSM_AREAS.includes(area)
      ? "BPF-LSM not available"
      : `${area} ${area_.mode}: ${area_.reason ?? ""}`;
  }
  return undefined;
}

/**
 * Starts the probe child outside the cgroup, waits for it to say it is ready (its start is not timed: a slow
 * host takes seconds), moves it in, lets it act, and reads its reply; a child that does not answer within
 * four probe timeouts of the go is killed.
 */
async function runProbe(plane: TestPlane, test: TestCase): Promise<ProbeReply> {
  const [command, ...prefix] = selfCommand();
  const ids = test.as ? `${test.as.uid}:${test.as.gid}` : "";
  const child = new Deno.Command(command!, {
    args: [...prefix, PROBE_ARGUMENT, JSON.stringify(test.probe), ids],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let kill: ReturnType<typeof setTimeout> | undefined;
  try {
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    if (text.split("\n")[0] !== "ready") {
      return { result: `the probe failed: ${(await stderr).trim() || "no output"}` };
    }
    plane.join(child.pid);
    kill = setTimeout(() => child.kill("SIGKILL"), PROBE_TIMEOUT_MS * 4);
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    await child.status;
    const line = text.trim().split("\n").at(-1) ?? "";
    try {
      return JSON.parse(line) as ProbeReply;
    } catch {
      return { result: `the probe failed: ${(await stderr).trim() || "no output"}` };
    }
  } finally {
    clearTimeout(kill);
  }
}

/** The plane's events as JSON objects, as `run` would write them, taken case by case. */
class EventCollector {
  readonly #pending: RawEvent[] = [];
  readonly #stream;
  readonly #context: EventContext;

  constructor(plane: DataPlane, context: EventContext) {
    this.#stream = plane.events((event) => this.#pending.push(event));
    this.#context = context;
  }

  take(): Record<string, unknown>[] {
    this.#stream.poll();
    const raw = this.#pending.splice(0);
    return raw.map((event) => JSON.parse(JSON.stringify(formatEvent(event, this.#context))));
  }

  close(): void {
    this.#stream.close();
  }
}

/** On SIGINT or SIGTERM: everything detached and removed, then the exit a signal gives (130, 143). */
function stopOnSignals(plane: TestPlane): () => void {
  const handlers = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const handler = () => {
      try {
        plane.close();
      } finally {
        Deno.exit(signal === "SIGINT" ? 130 : 143);
      }
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  return () => handlers.forEach((remove) => remove());
}
