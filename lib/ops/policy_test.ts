/**
 * `policy test`: a test file's cases run against its candidate policy in a throw-away data plane
 * (lib/kernel/test_plane.ts), never the live one. The candidate's scope is the plane's own temporary cgroup,
 * whatever the policy's says, so its BPF-LSM programs (global by nature) decide only the probes; the probe
 * children are moved into that cgroup before they act (lib/ops/probe_child.ts). Everything is detached and
 * removed at the end, on SIGINT and SIGTERM too.
 */
import { messageOf } from "../errors.ts";
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
  type Probe,
  probeAreas,
  type ProbeOutcome,
  type TestCase,
} from "../policy/test_file.ts";
import type { RawEvent } from "../../ffi/mod.ts";
import { planAreas } from "./apply.ts";
import { selfCommand } from "./helper_process.ts";
import { lines, PROBE_ARGUMENT, PROBE_TIMEOUT_MS, type ProbeReply } from "./probe_child.ts";

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
  // The signal listeners go first and leave last: a SIGINT or SIGTERM from before the plane exists until
  // after it is removed (the probe children's teardown included) still removes everything.
  const signals = new SignalCleanup();
  let plane: TestPlane;
  try {
    plane = signals.plane = TestPlane.create();
  } catch (error) {
    signals.remove();
    throw error;
  }
  try {
    await using children = new ProbeChildren((pid) => plane.join(pid));
    children.start(test.cases.map(identity));
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
        const reply = await children.run(test_);
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
    try {
      plane.close();
    } finally {
      signals.remove();
    }
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

/** The identity a case's probe runs as: `uid:gid`, or "" for root. */
function identity(test: Pick<TestCase, "as">): string {
  return test.as ? `${test.as.uid}:${test.as.gid}` : "";
}

/**
 * The probe children of a run, one per identity, each moved into the test cgroup once and then running its
 * identity's cases one after another. A child that ends (a probe that did not finish in time, a crash, a
 * kill at the parent's timeout) is replaced by a fresh one at its identity's next case.
 */
export class ProbeChildren implements AsyncDisposable {
  /** Moves a process into the test cgroup. */
  readonly #join: (pid: number) => void;
  readonly #children = new Map<string, ProbeChild>();

  constructor(join: (pid: number) => void) {
    this.#join = join;
  }

  /** Starts the children of `identities` now, so that their runtimes start while the plane loads. */
  start(identities: Iterable<string>): void {
    for (const ids of identities) {
      if (!this.#children.has(ids)) this.#children.set(ids, ProbeChild.spawn(ids));
    }
  }

  /** Runs the probe of `test` in its identity's child. */
  async run(test: Pick<TestCase, "probe" | "as">): Promise<ProbeReply> {
    const ids = identity(test);
    this.start([ids]);
    const child = this.#children.get(ids)!;
    const reply = await child.run(this.#join, test.probe);
    if (child.ended) {
      this.#children.delete(ids);
      await child.stop();
    }
    return reply;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const children = [...this.#children.values()];
    this.#children.clear();
    await Promise.all(children.map((child) => child.stop()));
  }
}

/** One probe child: started outside the cgroup, moved in once it says `ready`, then told each probe. */
class ProbeChild {
  readonly #process: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  /** The child's first line (`ready`), read from its start on. */
  readonly #ready: Promise<IteratorResult<string>>;
  readonly #stderr: Promise<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #joined = false;
  #ended = false;

  private constructor(process: Deno.ChildProcess) {
    this.#process = process;
    this.#lines = lines(process.stdout);
    this.#ready = this.#lines.next();
    this.#stderr = new Response(process.stderr).text();
    this.#writer = process.stdin.getWriter();
  }

  static spawn(ids: string): ProbeChild {
    const [command, ...prefix] = selfCommand();
    return new ProbeChild(
      new Deno.Command(command!, {
        args: [...prefix, PROBE_ARGUMENT, ...(ids === "" ? [] : [ids])],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn(),
    );
  }

  /** Whether this child takes no more probes. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Runs `probe`: the first time, waits for the child to say it is ready (its start is not timed: a slow
   * host takes seconds) and moves it into the cgroup. A child that does not answer within four probe
   * timeouts of the probe is killed.
   */
  async run(join: (pid: number) => void, probe: Probe): Promise<ProbeReply> {
    if (!this.#joined) {
      if ((await this.#ready).value !== "ready") return await this.#failed();
      join(this.#process.pid);
      this.#joined = true;
    }
    const kill = setTimeout(() => this.#kill(), PROBE_TIMEOUT_MS * 4);
    try {
      await this.#writer.write(new TextEncoder().encode(`${JSON.stringify(probe)}\n`));
      const { value, done } = await this.#lines.next();
      if (done) return await this.#failed();
      let reply: ProbeReply;
      try {
        reply = JSON.parse(value) as ProbeReply;
      } catch {
        return await this.#failed();
      }
      if (reply.ended) this.#ended = true;
      return reply;
    } catch {
      return await this.#failed(); // stdin closed: the child is gone
    } finally {
      clearTimeout(kill);
    }
  }

  /** Kills the child (unless it exited) and waits for it. */
  async stop(): Promise<void> {
    this.#ended = true;
    this.#kill();
    await this.#writer.close().catch(() => {});
    await this.#process.status;
    await this.#ready;
    await this.#lines.return(undefined);
  }

  async #failed(): Promise<ProbeReply> {
    this.#ended = true;
    this.#kill();
    await this.#process.status;
    return { result: `the probe failed: ${(await this.#stderr).trim() || "no output"}` };
  }

  #kill(): void {
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // it exited already
    }
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

/** On SIGINT or SIGTERM: the plane (once there is one) detached and removed, then the exit a signal gives. */
class SignalCleanup {
  plane: TestPlane | undefined;
  #remove: (() => void)[];

  constructor() {
    this.#remove = (["SIGINT", "SIGTERM"] as const).map((signal) => {
      const handler = () => {
        try {
          this.plane?.close();
        } catch (error) {
          console.error(`aegisbpf: error: policy test: cleanup on ${signal}: ${messageOf(error)}`);
        } finally {
          Deno.exit(signal === "SIGINT" ? 130 : 143);
        }
      };
      Deno.addSignalListener(signal, handler);
      return () => Deno.removeSignalListener(signal, handler);
    });
  }

  remove(): void {
    this.#remove.forEach((remove) => remove());
  }
}
