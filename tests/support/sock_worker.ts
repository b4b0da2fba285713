/**
 * A socket worker (tests/support/sock_worker.c) inside a test cgroup and a private network namespace:
 * it performs connects, sendto's and binds, each in a child process of its own, and says which pid ran
 * each case and what the syscall returned. Built by the test with the C compiler. `lines` splits a
 * worker's output into lines (packet_worker.ts reads its own worker with it).
 */
import { must } from "./privileged.ts";

export type SocketOp = "connect" | "sendto" | "bind";
export type SocketProtocol = "tcp" | "udp" | "udplite";

export type SocketCase = {
  op: SocketOp;
  protocol: SocketProtocol;
  /** IPv4 or IPv6 text; `::ffff:a.b.c.d` goes through an IPv6 socket. */
  addr: string;
  port: number;
  uid: number;
  gid: number;
};

/** What a case got: the child's pid, and the errno of the syscall (0: it succeeded). */
export type SocketOutcome =
  | { pid: number; stage: "op"; errno: number }
  | { pid: number; stage: "socket"; errno: number }
  | { pid: number; stage: "setup"; detail: string };

export const EPERM = 1;

const OP_LETTER: Record<SocketOp, string> = { connect: "c", sendto: "s", bind: "b" };
const SOURCE = new URL("./sock_worker.c", import.meta.url).pathname;

/** Compiles the worker into `dir`; returns the binary's path. */
export async function buildSocketWorker(dir: string): Promise<string> {
  const binary = `${dir}/sock_worker`;
  await must("clang", ["-O2", "-Wall", "-Werror", "-o", binary, SOURCE]);
  return binary;
}

export class SocketWorker {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: Promise<string>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = lines(child.stdout)[Symbol.asyncIterator]();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Starts `binary` (from buildSocketWorker) once it has joined `cgroupPath` (a cgroup v2 directory). */
  static async start(binary: string, cgroupPath: string): Promise<SocketWorker> {
    const child = new Deno.Command(binary, {
      args: [cgroupPath],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const worker = new SocketWorker(child);
    const first = await worker.#lines.next();
    if (first.done || first.value !== "ready") {
      const stderr = await worker.close();
      throw new Error(`socket worker did not start: ${stderr.trim() || first.value}`);
    }
    return worker;
  }

  /** Runs `cases` in order; one outcome each. */
  async run(cases: readonly SocketCase[]): Promise<SocketOutcome[]> {
    const text = cases
      .map((c) => `${OP_LETTER[c.op]} ${c.protocol} ${c.addr} ${c.port} ${c.uid} ${c.gid}\n`)
      .join("");
    // Write and read at once: the pipes hold less than a large batch.
    const writing = this.#writer.write(new TextEncoder().encode(text));
    const outcomes: SocketOutcome[] = [];
    for (let i = 0; i < cases.length; i++) {
      const next = await this.#lines.next();
      if (next.done) throw new Error(`socket worker exited: ${(await this.close()).trim()}`);
      const [pid = "", stage = "", value = ""] = next.value.split(" ");
      const base = { pid: Number(pid) };
      outcomes.push(
        stage === "o"
          ? { ...base, stage: "op", errno: Number(value) }
          : stage === "s"
          ? { ...base, stage: "socket", errno: Number(value) }
          : { ...base, stage: "setup", detail: value },
      );
    }
    await writing;
    return outcomes;
  }

  /** Ends the worker (closing its stdin) and returns what it wrote to stderr. */
  async close(): Promise<string> {
    try {
      await this.#writer.close();
    } catch {
      // already closed or the worker is gone
    }
    const status = await this.#child.status;
    const stderr = await this.#stderr;
    return status.success ? stderr : `${stderr} (exit ${status.code})`;
  }
}

export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
    }
  }
  if (buffer) yield buffer;
}
