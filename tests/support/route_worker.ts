/**
 * A route worker (tests/support/route_worker.c): a sender inside a test cgroup and a veth pair's client
 * namespace that sets a routing header or a source-route option (by setsockopt, or as ancillary data),
 * each case in a child process of its own, and a capture on the server's receiving device that says
 * whether the packet reached the route's first hop.
 */
import { buildGuestWorker } from "./guest_worker.ts";
import { lines } from "./sock_worker.ts";

export type RouteCase = {
  how: "sockopt" | "cmsg" | "clear";
  kind: "srh" | "rthdr2" | "lsrr" | "ssrr";
  protocol: "udp" | "tcp";
  /** The address the socket calls name (and judge). */
  dest: string;
  port: number;
  /** The addresses the route names, in the order the packet visits them. */
  hops: string[];
  uid: number;
};

/** The child's pid, the errnos of the setsockopt and of the send or connect (0: success), and the capture's answer. */
export type RouteOutcome = { pid: number; optErrno: number; sendErrno: number; onWire: boolean };

/** Compiles the worker into `dir` (inside the VM: the one the harness built); returns the binary's path. */
export function buildRouteWorker(dir: string): Promise<string> {
  return buildGuestWorker("route_worker", dir);
}

export class RouteWorker {
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

  /**
   * Starts `binary`: sender in `senderNs` and `cgroupPath`, capture on `device` of `receiverNs` (netns
   * paths); with `senderNs` "private", both in a private namespace where every address is routed via `lo`.
   */
  static async start(
    binary: string,
    where: { cgroupPath: string; senderNs: string; receiverNs: string; device: string },
  ): Promise<RouteWorker> {
    const child = new Deno.Command(binary, {
      args: [where.cgroupPath, where.senderNs, where.receiverNs, where.device],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const worker = new RouteWorker(child);
    const first = await worker.#lines.next();
    if (first.done || first.value !== "ready") {
      const stderr = await worker.close();
      throw new Error(`route worker did not start: ${stderr.trim() || first.value}`);
    }
    return worker;
  }

  async send(c: RouteCase): Promise<RouteOutcome> {
    const line = [c.how, c.kind, c.protocol, c.dest, c.port, c.hops.join(","), c.uid].join(" ");
    await this.#writer.write(new TextEncoder().encode(`${line}\n`));
    const next = await this.#lines.next();
    if (next.done) throw new Error(`route worker exited: ${(await this.close()).trim()}`);
    const [pid = "", opt = "", send = "", wire = ""] = next.value.split(" ");
    if (opt === "x") throw new Error(`route worker could not set up ${line}: exit ${send}`);
    return { pid: Number(pid), optErrno: Number(opt), sendErrno: Number(send), onWire: wire === "1" };
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
