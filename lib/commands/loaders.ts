/**
 * Every command and how to import it, in the order `aegisbpf --help` lists them. main.ts imports a command's
 * module only when it runs; `deno task man` imports them all and writes declarations.json from them. A new
 * command is a file, one line here, and `deno task man`.
 */

import type { Loaders } from "../cli/lazy.ts";

export const COMMANDS: Loaders = [
  { name: "run", load: async () => (await import("./run.ts")).run },
  {
    name: "policy",
    summary: "check, apply, roll back, sign and verify the host policy",
    commands: [
      { name: "validate", load: async () => (await import("./policy/validate.ts")).policyValidate },
      { name: "lint", load: async () => (await import("./policy/lint.ts")).policyLint },
      { name: "diff", load: async () => (await import("./policy/diff.ts")).policyDiff },
      { name: "simulate", load: async () => (await import("./policy/simulate.ts")).policySimulate },
      { name: "suggest", load: async () => (await import("./policy/suggest.ts")).policySuggest },
      { name: "init", load: async () => (await import("./policy/init.ts")).policyInit },
      { name: "test", load: async () => (await import("./policy/test.ts")).policyTest },
      { name: "apply", load: async () => (await import("./policy/apply.ts")).policyApply },
      { name: "show", load: async () => (await import("./policy/show.ts")).policyShow },
      { name: "history", load: async () => (await import("./policy/history.ts")).policyHistory },
      { name: "rollback", load: async () => (await import("./policy/rollback.ts")).policyRollback },
      { name: "sign", load: async () => (await import("./policy/sign.ts")).policySign },
      { name: "verify", load: async () => (await import("./policy/verify.ts")).policyVerify },
    ],
  },
  {
    name: "keys",
    summary: "manage the Ed25519 keys trusted for signed bundles",
    commands: [
      { name: "gen", load: async () => (await import("./keys/gen.ts")).keysGen },
      { name: "add", load: async () => (await import("./keys/add.ts")).keysAdd },
      { name: "remove", load: async () => (await import("./keys/remove.ts")).keysRemove },
      { name: "list", load: async () => (await import("./keys/list.ts")).keysList },
    ],
  },
  {
    name: "release",
    summary: "verify signed release artifacts offline",
    commands: [
      { name: "verify", load: async () => (await import("./release/verify.ts")).releaseVerify },
    ],
  },
  {
    name: "break-glass",
    summary: "force audit everywhere now, with or without a running agent, and end it",
    commands: [
      { name: "on", load: async () => (await import("./break_glass/on.ts")).breakGlassOnCommand },
      { name: "off", load: async () => (await import("./break_glass/off.ts")).breakGlassOffCommand },
      {
        name: "status",
        load: async () => (await import("./break_glass/status.ts")).breakGlassStatusCommand,
      },
    ],
  },
  {
    name: "exception",
    summary: "temporary allows that beat the policy's deny for one match, expiring in the kernel",
    commands: [
      { name: "add", load: async () => (await import("./exception/add.ts")).exceptionAdd },
      { name: "list", load: async () => (await import("./exception/list.ts")).exceptionList },
      { name: "remove", load: async () => (await import("./exception/remove.ts")).exceptionRemove },
    ],
  },
  { name: "doctor", load: async () => (await import("./doctor.ts")).doctor },
  { name: "health", load: async () => (await import("./health.ts")).health },
  { name: "status", load: async () => (await import("./status.ts")).status },
  { name: "events", load: async () => (await import("./events.ts")).events },
  { name: "detach", load: async () => (await import("./detach.ts")).detach },
  { name: "explain", load: async () => (await import("./explain.ts")).explain },
  { name: "metrics", load: async () => (await import("./metrics.ts")).metrics },
  { name: "version", load: async () => (await import("./version.ts")).version },
  { name: "completions", load: async () => (await import("./completions.ts")).completions },
  { name: "help", load: async () => (await import("./help.ts")).help },
];
