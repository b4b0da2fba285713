import assert from "node:assert/strict";
import { PROGRAMS } from "../../lib/kernel/object.ts";
import { type BpfObject, encodeU32, type RawEvent, sumPerCpu } from "../../ffi/mod.ts";
import type { ResolvedRuleSet } from "../../lib/kernel/entries.ts";
import { EventStream } from "../../lib/kernel/events.ts";
import { stageGeneration } from "../../lib/kernel/generations.ts";
import { emptyPlan, type NetRule, type RuleSetPlan } from "../../lib/policy/plan.ts";
import { fileIdentity } from "../../lib/kernel/resolve.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";

/**
 * Direct map writes for the tests that drive a loaded object without DataPlane: everything goes into
 * generation 0, which the zeroed config map makes active.
 */
export function writeRules(
  object: BpfObject,
  set: Partial<Omit<ResolvedRuleSet, "plan">> & { plan?: Partial<RuleSetPlan> },
): void {
  const resolved: ResolvedRuleSet = {
    files: [],
    exec: [],
    scope: { include: [], exempt: [] },
    interfaces: [],
    ...set,
    plan: { ...emptyPlan(), ...set.plan },
  };
  using staged = stageGeneration(object, resolved, 0);
  staged.commit();
}

/** A CIDR deny rule (IPv4 or IPv6). */
export function ipv4Rule(cidr: string, ruleId: number, extra: Partial<NetRule> = {}): NetRule {
  return { ruleId, action: "deny", ...parseCidr(cidr), ...extra };
}

/** The (dev, ino) of `path` as the kernel names it, as a deny entry for `ruleId`. */
export function inodeOf(path: string, ruleId: number): { dev: number; ino: bigint; ruleId: number } {
  return { ...fileIdentity(path, Deno.readTextFileSync("/proc/self/mountinfo")), ruleId };
}

/** Collects every event record the kernel has queued so far. */
export function drainEvents(object: BpfObject): RawEvent[] {
  const events: RawEvent[] = [];
  using stream = new EventStream(object.map("events"), (event) => events.push(event));
  stream.poll();
  return events;
}

/** Sum over CPUs of one per-CPU u64 counter slot. */
export function counter(object: BpfObject, slot: number): bigint {
  return sumPerCpu(object.map("counters").lookup(encodeU32(slot)));
}

/** The XDP program's verdict on `frame` (BPF_PROG_TEST_RUN through bpftool), `repeat` runs, all on `cpu` (0). */
export async function xdpVerdict(object: BpfObject, frame: number[], repeat = 1, cpu = 0): Promise<string> {
  const fd = object.program(PROGRAMS.ingress).fd;
  const id = /prog_id:\s*(\d+)/.exec(Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`))?.[1];
  assert.ok(id, "program id from fdinfo");
  const file = Deno.makeTempFileSync({ prefix: "aegisbpf-frame-" });
  try {
    Deno.writeFileSync(file, new Uint8Array(frame));
    const args = [
      "-c",
      String(cpu),
      "bpftool",
      "prog",
      "run",
      "id",
      id,
      "data_in",
      file,
      "repeat",
      String(repeat),
    ];
    const out = await new Deno.Command("taskset", { args, stdout: "piped" }).output();
    const code = /Return value: (\d+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
    return ({ "1": "DROP", "2": "PASS" } as Record<string, string>)[code ?? ""] ?? `return ${code}`;
  } finally {
    Deno.removeSync(file);
  }
}
