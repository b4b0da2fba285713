import {
  type BpfObject,
  CONFIG_WORDS,
  decodeEvent,
  encodeU32,
  encodeU64,
  type RawEvent,
  RingBuffer,
  sumPerCpu,
} from "../../ffi/mod.ts";
import { genInfoValue, type ResolvedRuleSet, ruleSetEntries } from "../../lib/kernel/entries.ts";
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
  const entries = ruleSetEntries(resolved, 0);
  for (const [name, { keys, values }] of Object.entries(entries)) {
    keys.forEach((key, i) => object.map(name).update(key, values[i]!));
  }
  object.map("gen_info").update(new Uint8Array(4), genInfoValue(resolved));
  object.map("aegis_cfg").update(encodeU32(CONFIG_WORDS.activeGen), encodeU64(0n));
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
  using ring = new RingBuffer(object.map("events"), (record) => events.push(decodeEvent(record)));
  ring.consume();
  return events;
}

/** Sum over CPUs of one per-CPU u64 counter slot. */
export function counter(object: BpfObject, slot: number): bigint {
  return sumPerCpu(object.map("counters").lookup(encodeU32(slot)));
}
