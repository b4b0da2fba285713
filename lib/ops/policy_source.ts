/**
 * Which policy `run` applies at start and on SIGHUP, read and checked under the state lock before anything
 * changes (see `readAgentPolicy` for the order).
 */

import { join } from "node:path";
import { RefusedError } from "../errors.ts";
import { checkInput, type PolicyInput, readApplyConfig, readRawInput } from "./apply_source.ts";
import { appliedPolicy, readApplied, type StoredPolicy } from "../state/apply_state.ts";
import { checkLockoutRisks } from "./lockout.ts";
import { parsePolicySource, policySha256 } from "../policy/parse.ts";
import { DEFAULT_POLICY, DEFAULT_POLICY_SOURCE } from "./default_policy.ts";
import type { InForceRef, PolicyChoice } from "./policy_choice.ts";

export type PolicyOrigin = "flag" | "config" | "applied" | "default";

export { choiceText, type InForceRef, type PolicyChoice } from "./policy_choice.ts";

export type SourcedPolicy = { input: PolicyInput; origin: PolicyOrigin; choice?: PolicyChoice };

type Dirs = { configDir: string; stateDir: string };

function modifiedMs(path: string): number | undefined {
  try {
    return Deno.statSync(path).mtime?.getTime();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * The policy a start (`why: "start"`) or SIGHUP (`"reload"`) applies. The newest operator intent wins:
 * `--policy FILE` at start; else the policy file (`--policy` on a reload, else `<config-dir>/policy.yaml`)
 * when it holds the policy in force or was changed after that policy was applied; else the policy in force
 * (applied by `policy apply`, the API or a rollback since the file last changed; a restart keeps it); else
 * the embedded default. The caller holds the state lock, so the policy in force cannot change meanwhile.
 */
export async function readAgentPolicy(
  dirs: Dirs,
  policyFile: string | undefined,
  why: "start" | "reload" = "start",
): Promise<SourcedPolicy> {
  const configured = join(dirs.configDir, "policy.yaml");
  const file = policyFile ?? configured;
  const origin: PolicyOrigin = policyFile === undefined ? "config" : "flag";
  const modified = modifiedMs(file);
  const applied = appliedPolicy(dirs.stateDir);
  if (modified === undefined) {
    if (policyFile !== undefined) return { input: await readFile(dirs, file), origin }; // says it is missing
    if (applied) return { input: storedInput(applied), origin: "applied" };
    return { input: defaultInput(), origin: "default" };
  }
  if (!applied) return { input: await readFile(dirs, file), origin };
  const { entry } = applied;
  const inForce: InForceRef = {
    seq: entry.seq,
    name: entry.name,
    version: entry.version,
    source: entry.source,
    time: entry.time,
  };
  const fileIsNewer = modified > Date.parse(entry.time);
  const explicit = policyFile !== undefined && why === "start";
  if (fileIsNewer || explicit) {
    const input = await readFile(dirs, file);
    if (fileIsNewer || input.sha256 === entry.sha256) return { input, origin };
    const when = new Date(modified).toISOString();
    return { input, origin, choice: { kind: "replaced", file, modified: when, inForce } };
  }
  // Older than the policy in force: it holds that same policy (a restart), or it is what was replaced.
  let input: PolicyInput | undefined;
  let problem: string | undefined;
  try {
    input = await readFile(dirs, file);
  } catch (error) {
    problem = error instanceof Error ? error.message : String(error);
  }
  if (input && input.sha256 === entry.sha256) return { input, origin };
  const kept: PolicyChoice = {
    kind: "kept",
    file,
    modified: new Date(modified).toISOString(),
    inForce,
    ...problem !== undefined && { problem },
  };
  return { input: storedInput(applied), origin: "applied", choice: kept };
}

function defaultInput(): PolicyInput {
  return {
    source: DEFAULT_POLICY_SOURCE,
    kind: "policy",
    content: DEFAULT_POLICY,
    policyText: DEFAULT_POLICY,
    sha256: policySha256(DEFAULT_POLICY),
    parsed: parsePolicySource(DEFAULT_POLICY, DEFAULT_POLICY_SOURCE),
  };
}

/** A policy history stored, as the input of an apply (it was checked when it was applied). */
export function storedInput({ entry, policyText }: StoredPolicy): PolicyInput {
  const source = `history entry ${entry.seq} (${entry.source})`;
  return {
    source,
    kind: entry.kind,
    content: policyText,
    policyText,
    sha256: entry.sha256,
    parsed: parsePolicySource(policyText, source),
    ...(entry.keyid === undefined ? {} : { keyid: entry.keyid }),
  };
}

/**
 * A policy file or signed bundle, checked as `policy apply` checks it, lock-out risks refused (`run` has no
 * --force: apply such a policy with `policy apply --force` and run without --policy). A bundle already in
 * force is accepted although its version equals the anti-rollback counter: restarting must not refuse it.
 */
async function readFile(dirs: Dirs, path: string): Promise<PolicyInput> {
  const raw = await readRawInput(path);
  const options = { ...dirs, requireSignature: readApplyConfig(dirs.configDir).requireSignature };
  let input: PolicyInput;
  try {
    input = checkInput(raw, options);
  } catch (error) {
    if (!(error instanceof RefusedError)) throw error;
    const again = checkInput(raw, { ...options, rollback: true });
    if (again.kind !== "bundle" || again.sha256 !== readApplied(dirs.stateDir)?.sha256) throw error;
    input = again;
  }
  const { risks } = await checkLockoutRisks(input, dirs.stateDir, undefined, dirs.configDir);
  if (risks.length > 0) {
    throw new RefusedError(
      `Refused ${path}: ${risks[0]!.message}` + (risks.length > 1 ? ` (and ${risks.length - 1} more)` : "") +
        `; fix the policy, or apply it with aegisbpf policy apply --force and run without --policy`,
    );
  }
  return input;
}
