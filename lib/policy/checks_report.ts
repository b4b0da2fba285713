/**
 * What `policy lint` and `policy simulate` say about a policy's self-check probes (`spec.checks`) before it
 * is applied. Pure: what they need of the host comes in as `ProbeFacts` (gathered by lib/ops/probe_facts.ts).
 *
 * - lint: each probe can run here: its program exists and is executable, the file it opens exists, the
 *   name it resolves (or connects to) resolves, the cgroup it runs in exists (or, for a probe of its own
 *   cgroup, the scope cgroup it is made under), and bash (and getent for resolve) are installed. An error:
 *   a probe that cannot run fails after the apply and rolls it back.
 * - simulate: what each probe will get under the policy, decided as the kernel would (decide.ts), and
 *   whether it then passes. A connect to a host name, and a resolve, are decided for the addresses and
 *   resolvers known here; what a probe's program does once it runs is not predicted.
 */
import type { Position } from "../errors.ts";
import type { Diagnostic } from "../text/diagnostics.ts";
import { describeProbe, type Expectation, parseHostPort, probeAction, type ProbeSpec } from "./checks.ts";
import { decide, type DecisionEvent } from "./decide.ts";
import type { RuleSetPlan } from "./plan.ts";
import type { Policy, PolicyPath } from "./schema.ts";
import { isIP } from "node:net";

/** What is known here about each probe's target, by the probe's key path (`spec.checks.mustWork.0`). */
export type ProbeFacts = {
  /** Problems that stop a probe from running here, by probe path (pathText of its key path). */
  problems: ReadonlyMap<string, { key: string; message: string }[]>;
  /** Addresses the names probes connect to resolve to here. */
  addresses: ReadonlyMap<string, readonly string[]>;
  /** Nameservers of /etc/resolv.conf: where a resolve probe's queries go. */
  resolvers: readonly string[];
};

export type ProbeEntry = { expect: Expectation; index: number; probe: ProbeSpec; path: PolicyPath };

/** Every probe the policy writes, with its key path. */
export function probeEntries(policy: Pick<Policy, "spec">): ProbeEntry[] {
  const checks = policy.spec.checks;
  if (!checks) return [];
  return (["mustWork", "mustDeny"] as const).flatMap((expect) =>
    (checks[expect] ?? []).map((probe, index) => ({
      expect,
      index,
      probe,
      path: ["spec", "checks", expect, index],
    }))
  );
}

export const probeKey = (entry: ProbeEntry): string => `${entry.expect}[${entry.index}]`;

/** lint's findings for the probes: one error per problem, at the probe's key. */
export function lintProbes(
  policy: Pick<Policy, "spec">,
  locate: (path: PolicyPath) => Position,
  facts: Pick<ProbeFacts, "problems">,
): Diagnostic[] {
  return probeEntries(policy).flatMap((entry) =>
    (facts.problems.get(probeKey(entry)) ?? []).map(({ key, message }) => ({
      severity: "error" as const,
      code: "probe-cannot-run",
      position: locate([...entry.path, key]),
      message: `${describeProbe(entry.expect, entry.probe)} cannot run here: ${message}`,
    }))
  );
}

export type ProbePrediction = {
  probe: string;
  expect: Expectation;
  /** What it will get: worked, denied, worked but audited, or not known in advance. */
  predicted: "worked" | "denied" | "audited" | "unknown";
  /** The rule that decides, when one does. */
  rule?: string;
  /** Whether it will pass; undefined when not known. */
  passes?: boolean;
  why: string;
};

/** What each probe of `policy` will get under `plan`. */
export function predictProbes(
  policy: Pick<Policy, "spec">,
  plan: RuleSetPlan,
  facts: Pick<ProbeFacts, "addresses" | "resolvers">,
): ProbePrediction[] {
  const scope = policy.spec.scope?.cgroups?.[0] ?? "";
  return probeEntries(policy).map((entry) => {
    const { probe, expect } = entry;
    const cgroup = probe.in ?? `${scope}/aegisbpf-check`;
    const who = probe.as ? { uid: probe.as.uid, gid: probe.as.gid ?? probe.as.uid } : { uid: 0, gid: 0 };
    const { action, target } = probeAction(probe);
    const events: DecisionEvent[] = [];
    let about = "";
    if (action === "connect") {
      const parsed = parseHostPort(target);
      if (typeof parsed !== "string") {
        const addrs = isIP(parsed.host) ? [parsed.host] : facts.addresses.get(parsed.host) ?? [];
        about = isIP(parsed.host)
          ? ""
          : ` (${parsed.host} resolves to ${addrs.join(", ") || "nothing here"})`;
        for (const addr of addrs) {
          events.push({
            area: "egress",
            addr,
            port: parsed.port,
            protocol: probe.protocol ?? "tcp",
            cgroup,
            ...who,
          });
        }
      }
    } else if (action === "resolve") {
      about = ` (queries to ${facts.resolvers.join(", ") || "no resolver"} port 53)`;
      for (const addr of facts.resolvers) {
        events.push({ area: "egress", addr, port: 53, protocol: "udp", cgroup, ...who });
      }
    } else {
      events.push({ area: action === "exec" ? "exec" : "file", path: target, cgroup });
    }
    const label = describeProbe(expect, probe);
    if (events.length === 0) {
      return { probe: label, expect, predicted: "unknown", why: `nothing to decide${about}` };
    }
    const decisions = events.map((event) => decide(plan, event));
    const denied = decisions.find((decision) => decision.decision === "deny");
    const audited = decisions.find((decision) => decision.decision === "audit");
    const deciding = denied ?? audited;
    const predicted = denied ? "denied" : audited ? "audited" : "worked";
    const rule = deciding?.ruleName ?? (deciding?.ruleId === undefined ? undefined : `#${deciding.ruleId}`);
    // An exec or open that works may still fail on the host (a program's exit code, a missing file).
    const passes = expect === "mustDeny" ? predicted === "denied" : predicted !== "denied";
    return {
      probe: label,
      expect,
      predicted,
      ...rule !== undefined && { rule },
      passes,
      why: `${predicted}${rule === undefined ? "" : ` by rule ${rule}`}${about}`,
    };
  });
}
