/**
 * Why the agent applies the policy it applies, where that is not the obvious one (lib/ops/policy_source.ts
 * decides it): apart, so that the agent names the choice without importing the policy parsers.
 */

/**
 * Why a start or SIGHUP applies what it applies, when the answer is not the obvious one: the policy file is
 * older than the policy in force and was kept out (`kept`), or it replaces a policy applied after the file
 * was last changed (`replaced`: `--policy` on the command line of a start is the newest intent there is).
 */
export type PolicyChoice =
  | { kind: "kept"; file: string; modified: string; inForce: InForceRef; problem?: string }
  | { kind: "replaced"; file: string; modified: string; inForce: InForceRef };

/** The history entry in force, as the choice names it. */
export type InForceRef = { seq: number; name: string; version: number; source: string; time: string };

/** What the agent says of a choice that is not the obvious one: one line, for the log and the event. */
export function choiceText(choice: PolicyChoice): string {
  const { inForce } = choice;
  const entry = `history entry ${inForce.seq} (policy ${inForce.name} version ${inForce.version}, ` +
    `from ${inForce.source}, applied ${inForce.time})`;
  if (choice.kind === "replaced") {
    return `${choice.file} (changed ${choice.modified}) replaces ${entry}, which was applied after the file ` +
      `last changed: --policy on the command line wins`;
  }
  return `${choice.file} (changed ${choice.modified}) is older than the policy in force, ${entry}: keeping ` +
    `that policy; edit the file (or touch it) and reload, or apply it with aegisbpf policy apply` +
    (choice.problem === undefined ? "" : `; the file does not check either: ${choice.problem}`);
}
