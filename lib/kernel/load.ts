import { BpfError, type BpfObject } from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import { ensureMounted } from "./mounts.ts";
import { openAegisObject, type ProgramName, PROGRAMS } from "./object.ts";
import { changedMaps, handOver } from "./upgrade.ts";

/** How an area is served on this kernel. */
export type AreaStatus = { mode: "enforce" | "audit-only" | "unavailable"; reason?: string };

/** The BPF-LSM programs of each area, and the file guard's programs every file or exec rule needs. */
export const FILE_LSM_PROGRAMS: readonly ProgramName[] = [
  PROGRAMS.fileOpen,
  PROGRAMS.fileReceive,
  // a denied file is not changeable (file.change; renames: GUARD_LSM_PROGRAMS)
  PROGRAMS.inodeSetattr,
  PROGRAMS.inodeUnlink,
  PROGRAMS.inodeLink,
  PROGRAMS.inodeSetxattr,
  PROGRAMS.inodeRemovexattr,
];
export const EXEC_LSM_PROGRAMS: readonly ProgramName[] = [
  PROGRAMS.exec,
  PROGRAMS.memfdExec,
  PROGRAMS.mmapFile,
  PROGRAMS.fileMprotect,
];
/** Rules that follow a replace: with either area. */
export const GUARD_LSM_PROGRAMS: readonly ProgramName[] = [PROGRAMS.inodeRename];
/**
 * The ptrace guard: attached with any BPF-LSM program; it decides only while the live generation holds a
 * scope (AEGIS_RULE_PTRACE_GUARD), and returns at once for anything but attach access.
 */
export const PTRACE_LSM_PROGRAMS: readonly ProgramName[] = [PROGRAMS.ptraceAccess, PROGRAMS.ptraceTraceme];
export const LSM_PROGRAMS: readonly ProgramName[] = [
  ...FILE_LSM_PROGRAMS,
  ...EXEC_LSM_PROGRAMS,
  ...GUARD_LSM_PROGRAMS,
  ...PTRACE_LSM_PROGRAMS,
  // Attached only while the live policy has a scope: it runs on every path walk (see DataPlane.apply).
  PROGRAMS.scopeGuard,
];
export const FILE_AUDIT_PROGRAMS: readonly ProgramName[] = [
  PROGRAMS.fileOpenAudit,
  PROGRAMS.fileOpenLegacyAudit,
  PROGRAMS.fileOpenat2Audit,
];
export const EXEC_AUDIT_PROGRAMS: readonly ProgramName[] = [PROGRAMS.execAudit];
export const CGROUP_PROGRAMS: Readonly<Record<"egress" | "bind", readonly ProgramName[]>> = {
  egress: [
    PROGRAMS.connect4,
    PROGRAMS.connect6,
    PROGRAMS.sendmsg4,
    PROGRAMS.sendmsg6,
    PROGRAMS.packetEgress,
    PROGRAMS.setsockopt,
  ],
  bind: [PROGRAMS.bind4, PROGRAMS.bind6],
};
export const COMMON_PROGRAMS: readonly ProgramName[] = [
  ...CGROUP_PROGRAMS.egress,
  ...CGROUP_PROGRAMS.bind,
  PROGRAMS.ingress,
  PROGRAMS.flushRates,
  PROGRAMS.forward,
];
const FALLBACK_PROGRAMS: readonly ProgramName[] = [...FILE_AUDIT_PROGRAMS, ...EXEC_AUDIT_PROGRAMS];
/**
 * Egress programs beyond the cgroup ones, where BPF-LSM loads: AF_PACKET sockets are refused by an LSM
 * hook (the cgroup sock_create hook never runs for them), SCTP associations with denied peers too (no
 * sock_addr hook runs for SCTP). Elsewhere a tracepoint reports packet sockets and the packet backstop
 * drops SCTP's packets.
 */
export const EGRESS_LSM_PROGRAMS = {
  lsm: [PROGRAMS.packetSocket, PROGRAMS.sctpConnect, PROGRAMS.sctpSocketConnect],
  fallback: [PROGRAMS.packetSocketAudit],
} as const;

/**
 * Bind programs beyond the cgroup ones, where BPF-LSM loads: SCTP has a bind of its own that never reaches
 * the cgroup bind hooks (bind and sctp_bindx). Elsewhere SCTP binds are not judged.
 */
export const BIND_LSM_PROGRAMS: readonly ProgramName[] = [PROGRAMS.socketBind, PROGRAMS.sctpBindx];

/** Whether this kernel loads BPF-LSM programs; when not, the errno and what libbpf and the kernel said. */
export type LsmProbe =
  | { ok: true }
  | { ok: false; errno: number; errnoName: string; reason: string; log: string };

let loaded: LsmProbe | undefined;

/**
 * Loads the LSM programs alone, in an instance of the object of their own (no pins, nothing attached),
 * and closes it: the load's outcome, not a message's text, says whether BPF-LSM can enforce here. A
 * success is kept for the life of the process: whether this kernel loads BPF-LSM programs is settled at boot
 * (`lsm=`, the kernel's build), and each probe verifies every LSM program again (seconds on a slow CPU, paid
 * by the agent's checks and its plane alike). A failure is asked again, in case it was passing (memory).
 */
export function probeLsm(): LsmProbe {
  if (loaded) return loaded;
  const probe = probeLsmNow();
  if (probe.ok) loaded = probe;
  return probe;
}

function probeLsmNow(): LsmProbe {
  let object: BpfObject;
  try {
    object = openAegisObject(LSM_PROGRAMS).load();
  } catch (error) {
    if (!(error instanceof BpfError)) throw error;
    return lsmProbeFailure(error, activeLsms());
  }
  object.close();
  return { ok: true };
}

/** The probe's answer for a failed load, given the active LSMs (undefined: securityfs unreadable). */
export function lsmProbeFailure(error: BpfError, activeLsms: readonly string[] | undefined): LsmProbe {
  const context = activeLsms === undefined
    ? ""
    : activeLsms.includes("bpf")
    ? " although bpf is listed in /sys/kernel/security/lsm"
    : ` (BPF LSM not active: lsm=${activeLsms.join(",")})`;
  return {
    ok: false,
    errno: error.errno,
    errnoName: error.errnoName,
    reason: `BPF-LSM program load failed: ${error.errnoName}${context}`,
    log: error.verifierLog ?? error.libbpfLog,
  };
}

/** The active LSMs, or undefined when securityfs cannot be read (or mounted). */
export function activeLsms(): string[] | undefined {
  try {
    ensureMounted("securityfs");
    return Deno.readTextFileSync("/sys/kernel/security/lsm").trim().split(",");
  } catch {
    return undefined;
  }
}

/** Why file and exec rules cannot be enforced with BPF-LSM here, or undefined when they can. */
function lsmUnavailableReason(lsm: "auto" | "off"): string | undefined {
  if (lsm === "off") return "BPF-LSM disabled by configuration";
  const probe = probeLsm();
  if (!probe.ok) return probe.reason;
  // LSM programs load (and attach) on a kernel that does not call the BPF LSM; they would decide nothing.
  const listed = activeLsms();
  if (listed === undefined) return "securityfs not mounted: cannot read /sys/kernel/security/lsm";
  return listed.includes("bpf") ? undefined : `BPF LSM not active (lsm=${listed.join(",")})`;
}

/**
 * How the kernel would serve each area of a plane loaded for `areas`, learned as `loadPlane` learns it (a
 * probe load of the LSM programs alone, nothing pinned or attached): what a dry run checks.
 */
export function planeStatus(
  areas: ReadonlySet<Area>,
  lsm: "auto" | "off",
): { status: Record<Area, AreaStatus>; withLsm: boolean } {
  const status: Record<Area, AreaStatus> = {
    file: { mode: "enforce" },
    exec: { mode: "enforce" },
    egress: { mode: "enforce" },
    bind: { mode: "enforce" },
    ingress: { mode: "enforce" },
  };
  const wantsFileLsm = areas.has("file") || areas.has("exec");
  const wantsLsm = wantsFileLsm || areas.has("egress") || areas.has("bind");
  const reason = wantsLsm ? lsmUnavailableReason(lsm) : undefined;
  if (reason !== undefined && wantsFileLsm) {
    status.file = { mode: "audit-only", reason };
    status.exec = { mode: "audit-only", reason };
  }
  return { status, withLsm: wantsLsm && reason === undefined };
}

export type LoadOptions = {
  areas: ReadonlySet<Area>;
  lsm: "auto" | "off";
  ringBufferBytes?: number | undefined;
  /** The object to load; the built one by default. */
  image?: Uint8Array<ArrayBuffer> | undefined;
};

/**
 * Loads the object with its maps pinned under `<pinDir>/maps` (reusing maps pinned there), in one
 * attempt: the LSM programs where the probe says they load, the audit tracepoints otherwise.
 */
export function loadPlane(
  pinDir: string,
  options: LoadOptions,
): { object: BpfObject; status: Record<Area, AreaStatus> } {
  const { status, withLsm } = planeStatus(options.areas, options.lsm);
  const programs = [
    ...COMMON_PROGRAMS,
    ...(withLsm ? LSM_PROGRAMS : FALLBACK_PROGRAMS),
    ...(withLsm ? EGRESS_LSM_PROGRAMS.lsm : EGRESS_LSM_PROGRAMS.fallback),
    ...(withLsm ? BIND_LSM_PROGRAMS : []),
  ];
  const open = (mapDir: string) => {
    const object = openAegisObject(programs, mapDir, options.image);
    try {
      if (options.ringBufferBytes !== undefined) object.setMaxEntries("events", options.ringBufferBytes);
    } catch (error) {
      object.close();
      throw error;
    }
    return object;
  };
  const mapDir = `${pinDir}/maps`;
  const first = open(mapDir);
  // Pins made by a release whose maps differ cannot be reused as they are: hand them over instead.
  if (changedMaps(mapDir, first.mapDefinitions()).length > 0) {
    first.close();
    return { object: handOver(pinDir, (dir) => open(dir).load()), status };
  }
  return { object: first.load(), status };
}
