/**
 * Which policy `run` applies, read and checked before anything changes: `--policy FILE`, else
 * `<config-dir>/policy.yaml`, else the policy already in force (applied earlier with `policy apply`: a
 * restarted agent keeps it), else the embedded default audit policy. Read again on every SIGHUP, so a
 * policy.yaml made since start is picked up.
 */

import { join } from "node:path";
import { RefusedError } from "../errors.ts";
import { checkInput, type PolicyInput, readApplyConfig, readRawInput } from "../policy/apply_source.ts";
import { appliedPolicy, readApplied, type StoredPolicy } from "../policy/apply_state.ts";
import { gatherLintFacts } from "../policy/facts.ts";
import { lockoutRisks } from "../policy/lint.ts";
import { parsePolicySource, policySha256 } from "../policy/parse.ts";
import { DEFAULT_POLICY, DEFAULT_POLICY_SOURCE } from "./default_policy.ts";

export type PolicyOrigin = "flag" | "config" | "applied" | "default";

export type SourcedPolicy = { input: PolicyInput; origin: PolicyOrigin };

type Dirs = { configDir: string; stateDir: string };

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

export async function readAgentPolicy(dirs: Dirs, policyFile: string | undefined): Promise<SourcedPolicy> {
  const configured = join(dirs.configDir, "policy.yaml");
  if (policyFile !== undefined) return { input: await readFile(dirs, policyFile), origin: "flag" };
  if (exists(configured)) return { input: await readFile(dirs, configured), origin: "config" };
  const applied = appliedPolicy(dirs.stateDir);
  if (applied) return { input: storedInput(applied), origin: "applied" };
  return {
    input: {
      source: DEFAULT_POLICY_SOURCE,
      kind: "policy",
      content: DEFAULT_POLICY,
      policyText: DEFAULT_POLICY,
      sha256: policySha256(DEFAULT_POLICY),
      parsed: parsePolicySource(DEFAULT_POLICY, DEFAULT_POLICY_SOURCE),
    },
    origin: "default",
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
  const { policy, locate } = input.parsed;
  const risks = lockoutRisks(policy, locate, await gatherLintFacts(policy, { stateDir: dirs.stateDir }));
  if (risks.length > 0) {
    throw new RefusedError(
      `Refused ${path}: ${risks[0]!.message}` + (risks.length > 1 ? ` (and ${risks.length - 1} more)` : "") +
        `; fix the policy, or apply it with aegisbpf policy apply --force and run without --policy`,
    );
  }
  return input;
}
