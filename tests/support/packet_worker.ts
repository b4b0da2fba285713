/**
 * A packet worker (tests/support/packet_worker.c) inside a test cgroup and a private network namespace:
 * it sends one packet a case from the sockets the cgroup sock_addr hooks do not see (ping, raw, UDP-Lite
 * connected, AF_PACKET), each from a child process of its own, and says whether the packet was delivered.
 */
import { buildGuestWorker } from "./guest_worker.ts";
import { LineWorker } from "./line_worker.ts";

export type PacketKind =
  | "ping"
  | "raw-icmp"
  | "raw-udp"
  | "hdrincl"
  | "raw6"
  | "udplite-connect"
  | "packet"
  | "sctp-connect"
  | "sctp-connectx"
  | "sctp-connectx-second"
  | "sctp-sendto"
  | "xdp"
  | "sock-packet"
  | "udplite-bind"
  | "sctp-bind"
  | "sctp-bindx";

export type PacketCase = { kind: PacketKind; addr: string; port?: number; uid?: number };

/** The child's pid, the errno of socket() or of the send (0: success), and whether delivery was proven. */
export type PacketOutcome = {
  pid: number;
  stage: "op" | "socket" | "setup";
  errno: number;
  delivered: boolean;
};

/** Compiles the worker into `dir` (inside the VM: the one the harness built); returns the binary's path. */
export function buildPacketWorker(dir: string): Promise<string> {
  return buildGuestWorker("packet_worker", dir);
}

export class PacketWorker {
  readonly #worker: LineWorker;

  private constructor(worker: LineWorker) {
    this.#worker = worker;
  }

  /** Starts `binary` once it has joined `cgroupPath` (a cgroup v2 directory). */
  static async start(binary: string, cgroupPath: string): Promise<PacketWorker> {
    return new PacketWorker(await LineWorker.start("packet worker", binary, [cgroupPath]));
  }

  /** Runs one case. */
  async send(c: PacketCase): Promise<PacketOutcome> {
    const answer = await this.#worker.ask(`${c.kind} ${c.addr} ${c.port ?? 0} ${c.uid ?? 0}`);
    const [pid = "", stage = "", errno = "", delivered = ""] = answer.split(" ");
    const stages: Record<string, PacketOutcome["stage"]> = { o: "op", s: "socket", x: "setup" };
    return {
      pid: Number(pid),
      stage: stages[stage] ?? "setup",
      errno: Number(errno),
      delivered: delivered === "1",
    };
  }

  /** Ends the worker (closing its stdin) and returns what it wrote to stderr. */
  close(): Promise<string> {
    return this.#worker.close();
  }
}
