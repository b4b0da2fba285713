/**
 * What applying one policy over another changes, per rule list (each is one kind of kernel map entry) and
 * per rule. A rule with an `id` is matched by its id, so an edit shows as `changed`; a rule without one is
 * matched by what it says (its generated id moves when rules are inserted above it), so an edit shows as
 * one `removed` and one `added`. Settings that are not rules (mode, scope, ingress interfaces and default,
 * denyMemfd, exec.default, denyPacketSockets, nat64Prefixes, the egress default) are compared too. Pure.
 */

import { type Policy, type PolicyRule, policyRules, type RuleList } from "./schema.ts";

export type RuleChange = {
  change: "added" | "removed" | "changed";
  list: RuleList;
  id: string;
  before?: unknown;
  after?: unknown;
};

export type SettingChange = { setting: string; before: unknown; after: unknown };

export type PolicyDiff = { rules: RuleChange[]; settings: SettingChange[] };

export function diffPolicies(before: Policy | undefined, after: Policy): PolicyDiff {
  const old = keyed(before ? policyRules(before) : []);
  const now = keyed(policyRules(after));
  const rules: RuleChange[] = [];
  for (const [key, rule] of old) {
    const next = now.get(key);
    if (next === undefined) {
      rules.push({ change: "removed", list: rule.list, id: rule.id, before: body(rule) });
    } else if (next.list !== rule.list || canonical(body(next)) !== canonical(body(rule))) {
      rules.push({ change: "changed", list: next.list, id: next.id, before: body(rule), after: body(next) });
    }
  }
  for (const [key, rule] of now) {
    if (!old.has(key)) rules.push({ change: "added", list: rule.list, id: rule.id, after: body(rule) });
  }
  const order = Object.keys(LIST_ORDER);
  rules.sort((a, b) => order.indexOf(a.list) - order.indexOf(b.list) || a.id.localeCompare(b.id));
  return { rules, settings: diffSettings(before, after) };
}

const LIST_ORDER: Record<RuleList, true> = {
  "files.deny": true,
  "files.protect": true,
  "files.writers": true,
  "exec.deny": true,
  "exec.allow": true,
  "network.egress.deny": true,
  "network.egress.allow": true,
  "network.egress.users": true,
  "network.bind.deny": true,
  "network.ingress.failsafe": true,
  "network.ingress.allow": true,
  "network.ingress.deny": true,
};

function keyed(rules: readonly PolicyRule[]): Map<string, PolicyRule> {
  const map = new Map<string, PolicyRule>();
  for (const rule of rules) {
    const key = rule.explicitId ? `id:${rule.id}` : `${rule.list}:${canonical(body(rule))}`;
    if (!map.has(key)) map.set(key, rule); // an exact duplicate without an id changes nothing
  }
  return map;
}

/** The rule as written, without its id (the id is the key). */
function body(rule: PolicyRule): Record<string, unknown> {
  const { id: _id, ...rest } = rule.rule as Record<string, unknown>;
  return rest;
}

/** JSON with keys sorted, so that key order in the file does not count as a change. */
export function canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
        : v,
  );
}

function settingsOf(policy: Policy | undefined): Record<string, unknown> {
  const spec = policy?.spec;
  const ingress = spec?.network?.ingress;
  return {
    mode: spec?.mode ?? null,
    "scope.cgroups": spec?.scope?.cgroups ?? [],
    "scope.exempt": spec?.scope?.exempt ?? [],
    "exec.denyMemfd": spec?.exec?.denyMemfd ?? false,
    "exec.default": spec?.exec?.default ?? "allow",
    "network.egress.denyPacketSockets": spec?.network?.egress?.denyPacketSockets ?? false,
    "network.egress.forwarded": spec?.network?.egress?.forwarded ?? false,
    "network.egress.default": spec?.network?.egress?.default ?? "allow",
    "network.egress.nat64Prefixes": spec?.network?.egress?.nat64Prefixes ?? [],
    "network.ingress.interfaces": ingress?.interfaces ?? [],
    "network.ingress.default": ingress?.default ?? null,
    checks: spec?.checks ?? null,
  };
}

function diffSettings(before: Policy | undefined, after: Policy): SettingChange[] {
  const old = settingsOf(before);
  const now = settingsOf(after);
  return Object.keys(now).flatMap((setting) =>
    canonical(old[setting]) === canonical(now[setting])
      ? []
      : [{ setting, before: old[setting], after: now[setting] }]
  );
}
