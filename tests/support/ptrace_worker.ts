/**
 * The two sides of a ptrace injection (tests/support/ptrace_worker.c): a victim that opens whatever path
 * its buffer holds each round, and an attacker that rewrites that buffer from another cgroup, both as uid
 * 65534.
 */
import assert from "node:assert/strict";
import { buildGuestWorker } from "./guest_worker.ts";
import { lines } from "./lines.ts";

/** Compiles the worker into `dir` (inside the VM: the one the harness built); returns the binary's path. */
export function buildPtraceWorker(dir: string): Promise<string> {
  return buildGuestWorker("ptrace_worker", dir);
}

/** Runs the worker to its end; what it printed (stdout, then stderr). */
export async function runPtraceWorker(binary: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim();
}

/** The victim, in cgroup `cgroup` (a cgroup v2 directory). */
export class PtraceVictim {
  readonly #binary: string;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  pid = 0;
  /** Its path buffer's address, in hex. */
  address = "";

  private constructor(binary: string, cgroup: string) {
    this.#binary = binary;
    this.#child = new Deno.Command(binary, { args: ["victim", cgroup], stdin: "piped", stdout: "piped" })
      .spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#lines = lines(this.#child.stdout)[Symbol.asyncIterator]();
  }

  static async start(binary: string, cgroup: string): Promise<PtraceVictim> {
    const victim = new PtraceVictim(binary, cgroup);
    try {
      const line = await victim.#line();
      const match = /^ready (\d+) ([0-9a-f]+)$/.exec(line);
      assert.ok(match, `victim: ${line}`);
      victim.pid = Number(match[1]);
      victim.address = match[2]!;
      return victim;
    } catch (error) {
      await victim.close();
      throw error;
    }
  }

  /** One round: what the victim opened ("opened PATH: CONTENT" or "errno NAME PATH"). */
  async open(): Promise<string> {
    await this.#stdin.write(new TextEncoder().encode("go\n"));
    return await this.#line();
  }

  /**
   * An attacker in cgroup `from` writes `path` into this victim's buffer by `method` (poke, vm_writev,
   * mem), then the victim takes a round: what each side printed.
   */
  async inject(method: string, from: string, path: string): Promise<{ attack: string; victim: string }> {
    const attack = await runPtraceWorker(
      this.#binary,
      "attack",
      method,
      from,
      String(this.pid),
      this.address,
      path,
    );
    return { attack, victim: await this.open() };
  }

  async close(): Promise<void> {
    try {
      await this.#stdin.close();
    } catch {
      // the victim is gone already
    }
    await this.#child.status;
  }

  async #line(): Promise<string> {
    const next = await this.#lines.next();
    assert.ok(!next.done, "the victim ended");
    return next.value;
  }
}
