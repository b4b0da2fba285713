/**
 * A route worker (tests/support/route_worker.c): a sender inside a test cgroup and a veth pair's client
 * namespace that sets a routing header or a source-route option (by setsockopt, or as ancillary data),
 * each case in a child process of its own, and a capture on the server's receiving device that says
 * whether the packet reached the route's first hop.
 */
import { buildGuestWorker } from "./guest_worker.ts";
import { LineWorker } from "./line_worker.ts";

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
  readonly #worker: LineWorker;

  private constructor(worker: LineWorker) {
    this.#worker = worker;
  }

  /**
   * Starts `binary`: sender in `senderNs` and `cgroupPath`, capture on `device` of `receiverNs` (netns
   * paths); with `senderNs` "private", both in a private namespace where every address is routed via `lo`.
   */
  static async start(
    binary: string,
    where: { cgroupPath: string; senderNs: string; receiverNs: string; device: string },
  ): Promise<RouteWorker> {
    const args = [where.cgroupPath, where.senderNs, where.receiverNs, where.device];
    return new RouteWorker(await LineWorker.start("route worker", binary, args));
  }

  async send(c: RouteCase): Promise<RouteOutcome> {
    const line = [c.how, c.kind, c.protocol, c.dest, c.port, c.hops.join(","), c.uid].join(" ");
    const [pid = "", opt = "", send = "", wire = ""] = (await this.#worker.ask(line)).split(" ");
    if (opt === "x") throw new Error(`route worker could not set up ${line}: exit ${send}`);
    return { pid: Number(pid), optErrno: Number(opt), sendErrno: Number(send), onWire: wire === "1" };
  }

  /** Ends the worker (closing its stdin) and returns what it wrote to stderr. */
  close(): Promise<string> {
    return this.#worker.close();
  }
}
