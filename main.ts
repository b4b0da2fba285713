/** The aegisbpf command line: the registry of commands, and dispatch to the one the arguments name. */

import "./lib/agent/no_inspector.ts"; // first: SIGUSR1 would open the runtime's inspector to every local user
import { PREPARE_ARGUMENT, preparePolicyMain } from "./lib/ops/prepare.ts";
import { disarmInspector } from "./lib/agent/process_guard.ts";
import type { Registry } from "./lib/cli/command.ts";
import { processIo, runCli } from "./lib/cli/run.ts";
import { breakGlassOffCommand } from "./lib/commands/break_glass/off.ts";
import { breakGlassOnCommand } from "./lib/commands/break_glass/on.ts";
import { breakGlassStatusCommand } from "./lib/commands/break_glass/status.ts";
import { completions } from "./lib/commands/completions.ts";
import { detach } from "./lib/commands/detach.ts";
import { doctor } from "./lib/commands/doctor.ts";
import { events } from "./lib/commands/events.ts";
import { explain } from "./lib/commands/explain.ts";
import { health } from "./lib/commands/health.ts";
import { help } from "./lib/commands/help.ts";
import { metrics } from "./lib/commands/metrics.ts";
import { keysAdd } from "./lib/commands/keys/add.ts";
import { keysGen } from "./lib/commands/keys/gen.ts";
import { keysList } from "./lib/commands/keys/list.ts";
import { keysRemove } from "./lib/commands/keys/remove.ts";
import { policyApply } from "./lib/commands/policy/apply.ts";
import { policyDiff } from "./lib/commands/policy/diff.ts";
import { policyHistory } from "./lib/commands/policy/history.ts";
import { policyLint } from "./lib/commands/policy/lint.ts";
import { policyRollback } from "./lib/commands/policy/rollback.ts";
import { policyShow } from "./lib/commands/policy/show.ts";
import { policySimulate } from "./lib/commands/policy/simulate.ts";
import { policySign } from "./lib/commands/policy/sign.ts";
import { policyValidate } from "./lib/commands/policy/validate.ts";
import { policyVerify } from "./lib/commands/policy/verify.ts";
import { run } from "./lib/commands/run.ts";
import { status } from "./lib/commands/status.ts";
import { version } from "./lib/commands/version.ts";

/** Every command, in the order `aegisbpf --help` lists them. A new command is a file and one line here. */
export const REGISTRY: Registry = [
  run,
  {
    name: "policy",
    summary: "check, apply, roll back, sign and verify the host policy",
    commands: [
      policyValidate,
      policyLint,
      policyDiff,
      policySimulate,
      policyApply,
      policyShow,
      policyHistory,
      policyRollback,
      policySign,
      policyVerify,
    ],
  },
  {
    name: "keys",
    summary: "manage the Ed25519 keys trusted for signed bundles",
    commands: [keysGen, keysAdd, keysRemove, keysList],
  },
  {
    name: "break-glass",
    summary: "force audit everywhere now, with or without a running agent, and end it",
    commands: [breakGlassOnCommand, breakGlassOffCommand, breakGlassStatusCommand],
  },
  doctor,
  health,
  status,
  events,
  detach,
  explain,
  metrics,
  version,
  completions,
  help,
];

if (import.meta.main) {
  disarmInspector(); // done already by the first import, unless this entry was renamed (a compiled binary)
  // The agent's policy check process (lib/ops/prepare.ts), not a command.
  if (Deno.args.length === 1 && Deno.args[0] === PREPARE_ARGUMENT) Deno.exit(await preparePolicyMain());
  Deno.exit(await runCli(Deno.args, REGISTRY, processIo()));
}
