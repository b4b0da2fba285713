/**
 * Connections made before apply: TCP and connected UDP sockets whose destination the active rules deny.
 * The socket iterators of net_guard.bpf.h walk every socket in scope; where the kernel has the
 * `bpf_sock_destroy` kfunc (6.5 and later) an enforce rule set closes them as it walks, elsewhere (and in
 * audit) they are only listed. The apply path calls this after the flip, and anything can call it again.
 */
import {
  type BpfObject,
  BUILD_PROGRAMS,
  decodeConnRecords,
  FAMILY,
  PinnedProgram,
  readIterator,
  tryLockDirectory,
} from "../../ffi/mod.ts";
import { formatAddress } from "./events.ts";
import { fileContains } from "./file_search.ts";
import { aegisObjectImage, openAegisObject, type ProgramName, PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";
import {
  BUILD_MAP,
  type BuildRecord,
  objectFingerprint,
  readBuildRecord,
  sameFingerprint,
  writeBuildRecord,
} from "./programs.ts";

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
  sweep: {
    bit: BUILD_PROGRAMS.SWEEP,
    walks: [
      { program: PROGRAMS.sweepTcp, protocol: "tcp" },
      { program: PROGRAMS.sweepUdp, protocol: "udp" },
    ],
  },
  list: {
    bit: BUILD_PROGRAMS.LIST,
    walks: [
      { program: PROGRAMS.listTcp, protocol: "tcp" },
      { program: PROGRAMS.listUdp, protocol: "udp" },
    ],
  },
} as const;

/**
 * Runs the sweep against the rules pinned under `pinDir` (`<bpffs>/aegisbpf`). `close: false` only lists
 * (for a health check, which must change no connection); by default an enforce rule set closes what it
 * finds where the kernel can. The iterator programs are those pinned by an earlier walk of this build
 * (`iteratorPrograms`): only the first walk after a load loads and verifies them.
 */
export function sweepConnections(pinDir: string, options: { close?: boolean } = {}): ConnectionSweep {
  const { bit, walks } = WALKS[options.close === false ? "list" : "sweep"];
  removeStalePins(pinDir);
  using programs = iteratorPrograms(pinDir, walks.map((walk) => walk.program), bit);
  const connections = walks.flatMap(({ program, protocol }) =>
    decodeConnRecords(readIterator(programs.fd(program), program)).map(
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
}

/** Iterator programs to run by descriptor, held until disposed. */
type Iterators = { fd(name: ProgramName): number; [Symbol.dispose](): void };

/**
 * The iterator programs `names` (one BUILD_PROGRAMS `bit`): adopted from their pins under `<pinDir>/progs/`
 * where the build record names this very object and says they are pinned, else loaded (one object load
 * with the pinned maps) and, where the record is this build's, pinned and recorded for the next walk. A
 * build record of another object (or none) never lets its iterators be adopted: a load of another build
 * writes its record afresh, without these bits (lib/kernel/load.ts).
 */
export function iteratorPrograms(pinDir: string, names: readonly ProgramName[], bit: number): Iterators {
  const mapDir = `${pinDir}/maps`;
  const sha256 = objectFingerprint(aegisObjectImage());
  const ours = (record: BuildRecord | undefined): record is BuildRecord =>
    record !== undefined && sameFingerprint(record.sha256, sha256);
  const record = readBuildRecord(mapDir);
  if (
    ours(record) && (record.programs & bit) !== 0 && names.every((name) => exists(`${pinDir}/progs/${name}`))
  ) {
    const pinned = new Map<ProgramName, PinnedProgram>();
    try {
      for (const name of names) pinned.set(name, PinnedProgram.open(`${pinDir}/progs/${name}`, name));
    } catch (error) {
      for (const program of pinned.values()) program.close();
      throw error;
    }
    return {
      fd: (name) => pinned.get(name)!.fd,
      [Symbol.dispose]: () => {
        for (const program of pinned.values()) program.close();
      },
    };
  }
  const object = openAegisObject(names, mapDir).load();
  try {
    if (ours(record)) pinIterators(pinDir, object, names, bit, ours);
  } catch {
    // The pins only spare the next walk a load: this walk goes on with the programs it loaded.
  }
  return { fd: (name) => object.program(name).fd, [Symbol.dispose]: () => object.close() };
}

/**
 * Pins the iterators `object` loaded and adds `bit` to the build record, while no other process works on
 * the pins (never waiting for one: then the next walk loads them again) and the record is still this
 * build's. The pins are made before the bit is written: a record that names them finds them all.
 */
function pinIterators(
  pinDir: string,
  object: BpfObject,
  names: readonly ProgramName[],
  bit: number,
  ours: (record: BuildRecord | undefined) => record is BuildRecord,
): void {
  using lock = tryLockDirectory(pinDir);
  if (!lock) return;
  const record = readBuildRecord(`${pinDir}/maps`);
  if (!ours(record)) return;
  for (const name of names) {
    const path = `${pinDir}/progs/${name}`;
    if (exists(path)) Deno.removeSync(path);
    object.program(name).pin(path);
  }
  writeBuildRecord(object.map(BUILD_MAP), { ...record, programs: record.programs | bit });
}

const SWEEP_PIN = /^sweep-(\d+)-(tcp|udp)$/;

/** Iterator pins an older release's sweep, killed between pin and unpin, left behind (its process is gone). */
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

let canClose: boolean | undefined;

/**
 * Whether the running kernel's BTF names the bpf_sock_destroy kfunc. The name is searched in the BTF's
 * bytes with the runtime's native search (a few milliseconds for the 5-6 MB of a distribution kernel's).
 */
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
