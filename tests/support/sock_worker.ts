/**
 * A socket worker (tests/support/sock_worker.c) inside a test cgroup and a private network namespace:
 * it performs connects, sendto's and binds, each in a child process of its own, and says which pid ran
 * each case and what the syscall returned. Built by the test with the C compiler.
 */
import { LineWorker } from "./line_worker.ts";
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
  readonly #worker: LineWorker;

  private constructor(worker: LineWorker) {
    this.#worker = worker;
  }

  /** Starts `binary` (from buildSocketWorker) once it has joined `cgroupPath` (a cgroup v2 directory). */
  static async start(binary: string, cgroupPath: string): Promise<SocketWorker> {
    return new SocketWorker(await LineWorker.start("socket worker", binary, [cgroupPath]));
  }

  /** Runs `cases` in order; one outcome each. */
  async run(cases: readonly SocketCase[]): Promise<SocketOutcome[]> {
    const text = cases
      .map((c) => `${OP_LETTER[c.op]} ${c.protocol} ${c.addr} ${c.port} ${c.uid} ${c.gid}\n`)
      .join("");
    // Write and read at once: the pipes hold less than a large batch.
    const writing = this.#worker.write(text);
    const outcomes: SocketOutcome[] = [];
    for (let i = 0; i < cases.length; i++) {
      const [pid = "", stage = "", value = ""] = (await this.#worker.next()).split(" ");
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
  close(): Promise<string> {
    return this.#worker.close();
  }
}
