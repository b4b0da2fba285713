import assert from "node:assert/strict";
import { HOOK, type RawEvent } from "../../ffi/mod.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { execFileName } from "../../lib/kernel/events.ts";
import { drain } from "./plane.ts";

/** What a program run by a test did: its exit code (-1: the exec itself was refused), signal and output. */
export type Outcome = { code: number; signal: Deno.Signal | null; out: string };

/** Runs a program with stdout and stderr piped; a refused exec is an outcome too (code -1, the error's text). */
export async function run(program: string, args: string[]): Promise<Outcome> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (error) {
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
    return { code: -1, signal: null, out: String(error) };
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    signal: output.signal,
    out: (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim(),
  };
}

/** The outcome of something the kernel must refuse: it failed, and a probe's "ok" line is not there. */
export function assertRefused(outcome: Outcome, what: string): void {
  assert.notEqual(outcome.code, 0, `${what} must fail: ${outcome.out}`);
  assert.doesNotMatch(outcome.out, /^ok/, what);
}

/** A private copy of `source` (an inode of its own) at `path`, executable. */
export function copyExecutable(source: string, path: string): string {
  Deno.copyFileSync(source, path);
  Deno.chmodSync(path, 0o755);
  return path;
}

/** The exec events drained from `plane`, without rate-limit summaries. */
export function execEvents(plane: DataPlane): RawEvent[] {
  return drain(plane).filter((event) => event.hook === HOOK.EXEC && !(event.flags & 1));
}

/** The exec event for the file at `path` with `reason`, in `decision` (0 deny, 1 audit), by `ruleId`. */
export function assertExecReported(
  events: RawEvent[],
  path: string,
  reason: number,
  decision: number,
  ruleId: number,
): RawEvent {
  const ino = BigInt(Deno.statSync(path).ino!);
  const found = events.find((event) => event.ino === ino && event.op === reason);
  const seen = events.map((e) => `${e.ino}/op ${e.op}/rule ${e.ruleId}/${execFileName(e)}/${e.comm}`);
  assert.ok(found, `no event for ${path} (ino ${ino}, reason ${reason}) in ${seen.join(", ")}`);
  assert.equal(found.decision, decision, "decision");
  assert.equal(found.ruleId, ruleId, "rule");
  assert.equal(execFileName(found), path.split("/").at(-1)!.slice(0, 31), "name");
  return found;
}

/** The events of `hook` drained from `plane`, without rate-limit summaries. */
export function hookEvents(plane: DataPlane, hook: number): RawEvent[] {
  return drain(plane).filter((event) => event.hook === hook && !(event.flags & 1));
}
