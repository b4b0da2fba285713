/** A small registry and an in-memory run of the CLI, for the tests of this folder. */

import { InputError, RefusedError } from "../errors.ts";
import { defineCommand, type Registry } from "./command.ts";
import { bufferWriter } from "./output.ts";
import { runCli } from "./run.ts";

const sign = defineCommand({
  name: "sign",
  summary: "sign a policy",
  options: {
    key: { type: "string", valueName: "KEY", required: true, complete: "file", description: "private key" },
    out: { type: "string", valueName: "BUNDLE", description: "where the bundle goes" },
    tag: { type: "string", multiple: true, description: "a tag" },
    mode: { type: "string", choices: ["audit", "enforce"], default: "audit", description: "the mode" },
    json: { type: "boolean", description: "print JSON" },
  },
  args: [{ name: "FILE", description: "the policy", complete: "file" }],
  examples: ["aegisbpf policy sign p.yaml --key k.pem"],
  run(ctx, { flags, args }) {
    ctx.stdout.line(JSON.stringify({ flags, args, globals: ctx.globals }));
    return Promise.resolve(0);
  },
});

const fail = defineCommand({
  name: "fail",
  summary: "throw the error named by KIND",
  options: {},
  args: [{ name: "KIND", description: "input, refused or other", choices: ["input", "refused", "other"] }],
  run(_ctx, { args }) {
    if (args.KIND === "input") {
      throw new InputError("bad rule", { position: { file: "p.yaml", line: 3, column: 7 } });
    }
    if (args.KIND === "refused") throw new RefusedError("would lock the host out");
    throw new Error("disk on fire\nsecond line");
  },
});

export const TEST_REGISTRY: Registry = [
  fail,
  { name: "policy", summary: "check and sign policy", commands: [sign] },
];

export type Outcome = { code: number; stdout: string; stderr: string };

export async function runTest(
  argv: string[],
  env: Record<string, string> = {},
  tty = false,
): Promise<Outcome> {
  const stdout = bufferWriter();
  const stderr = bufferWriter();
  const code = await runCli(argv, TEST_REGISTRY, {
    stdout,
    stderr,
    stdoutIsTTY: tty,
    stderrIsTTY: tty,
    env: (name) => env[name],
  });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
