/**
 * Connections made before apply: TCP and connected UDP sockets whose destination the active rules deny.
 * The socket iterators of net_guard.bpf.h walk every socket in scope; where the kernel has the
 * `bpf_sock_destroy` kfunc (6.5 and later) an enforce rule set closes them as it walks, elsewhere (and in
 * audit) they are only listed. The apply path calls this after the flip, and anything can call it again.
 */
import { type BpfObject, decodeConnRecords, FAMILY } from "../../ffi/mod.ts";
import { formatAddress } from "./events.ts";
import { fileContains } from "./file_search.ts";
import { openAegisObject, PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";

export type DeniedConnection = {
  protocol: "tcp" | "udp";
  family: "ipv4" | "ipv6";
  daddr: string;
  dport: number;
  saddr: string;
  sport: number;
  ruleId: number;
  /** The active generation when it was found: its rule table names `ruleId`. */
  generation: number;
  uid: number;
  cgroupId: bigint;
  /** Closed by the sweep (enforce, 6.5+, not `close: false`); otherwise still open. */
  closed: boolean;
};

export type ConnectionSweep = {
  /** Whether this kernel lets the sweep close sockets (bpf_sock_destroy, 6.5+). */
  canClose: boolean;
  connections: DeniedConnection[];
};

const WALKS = {
  sweep: [
    { program: PROGRAMS.sweepTcp, protocol: "tcp" },
    { program: PROGRAMS.sweepUdp, protocol: "udp" },
  ],
  list: [
    { program: PROGRAMS.listTcp, protocol: "tcp" },
    { program: PROGRAMS.listUdp, protocol: "udp" },
  ],
} as const;

/**
 * Runs the sweep against the rules pinned under `pinDir` (`<bpffs>/aegisbpf`). `close: false` only lists
 * (for a health check, which must change nothing); by default an enforce rule set closes what it finds
 * where the kernel can.
 */
export function sweepConnections(pinDir: string, options: { close?: boolean } = {}): ConnectionSweep {
  const walk = WALKS[options.close === false ? "list" : "sweep"];
  removeStalePins(pinDir);
  const object = openAegisObject(walk.map((sweep) => sweep.program), `${pinDir}/maps`).load();
  try {
    const connections = walk.flatMap(({ program, protocol }) =>
      decodeConnRecords(
        runIterator(
          object,
          program,
          `${pinDir}/sweep-${Deno.pid}-${protocol}`, /* bpffs names have no dots */
        ),
      ).map(
        (record): DeniedConnection => {
          const family = record.family === FAMILY.IPV6 ? "ipv6" : "ipv4";
          return {
            protocol,
            family,
            daddr: formatAddress(record.daddr, family),
            dport: record.dport,
            // The source is the socket's own: IPv6 for an IPv6 socket even when its peer is matched as IPv4.
            saddr: formatAddress(
              record.saddr,
              record.saddr.subarray(4).some((byte) => byte) ? "ipv6" : family,
            ),
            sport: record.sport,
            ruleId: record.ruleId,
            generation: record.gen,
            uid: record.uid,
            cgroupId: record.cgroupId,
            closed: record.closed,
          };
        },
      )
    );
    return { canClose: kernelCanCloseSockets(), connections };
  } finally {
    object.close();
  }
}

const SWEEP_PIN = /^sweep-(\d+)-(tcp|udp)$/;

/** Iterator pins a sweep killed between pin and unpin left behind (its process is gone). */
function removeStalePins(pinDir: string): void {
  for (const name of listDir(pinDir)) {
    const pid = SWEEP_PIN.exec(name)?.[1];
    if (pid === undefined || exists(`/proc/${pid}`)) continue;
    try {
      Deno.removeSync(`${pinDir}/${name}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // another sweep removed it first
    }
  }
}

/** One pass of an iterator program: attached, pinned under `path` for the read, removed again. */
function runIterator(object: BpfObject, program: string, path: string): Uint8Array {
  const link = object.program(program).attach();
  try {
    link.pin(path);
    try {
      return Deno.readFileSync(path);
    } finally {
      link.unpin();
    }
  } finally {
    link.close();
  }
}

let canClose: boolean | undefined;

/** Whether the running kernel's BTF names the bpf_sock_destroy kfunc. */
export function kernelCanCloseSockets(): boolean {
  if (canClose === undefined) {
    try {
      canClose = fileContains("/sys/kernel/btf/vmlinux", new TextEncoder().encode("\0bpf_sock_destroy\0"));
    } catch {
      canClose = false;
    }
  }
  return canClose;
}

/** One line per connection, for `policy apply` and `health`. */
export function describeConnection(c: DeniedConnection, ruleName: string): string {
  const peer = c.family === "ipv6" ? `[${c.daddr}]:${c.dport}` : `${c.daddr}:${c.dport}`;
  const local = c.saddr.includes(":") ? `[${c.saddr}]:${c.sport}` : `${c.saddr}:${c.sport}`;
  return `${c.protocol} ${local} -> ${peer} (uid ${c.uid}, cgroup ${c.cgroupId}, rule ${ruleName}) ` +
    (c.closed ? "closed" : "still open");
}
