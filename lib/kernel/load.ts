import { BpfError, type BpfObject, BUILD_PROGRAMS } from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import { ensureMounted } from "./mounts.ts";
import { aegisObjectImage, openAegisObject, type ProgramName, PROGRAMS } from "./object.ts";
import { fileContains } from "./file_search.ts";
import { exists, listDir } from "./pin_dir.ts";
import {
  AdoptedPrograms,
  BUILD_MAP,
  type BuildRecord,
  LoadedPrograms,
  objectFingerprint,
  type PlanePrograms,
  readBuildRecord,
  sameFingerprint,
  writeBuildRecord,
} from "./programs.ts";
import { recordedFilters } from "./tc_filter.ts";
import { changedMaps, handOver, moveFilters, moveLinks } from "./upgrade.ts";

/**
 * What the file area's audit fallback (the open tracepoints, where BPF-LSM does not load) sees: said by
 * `doctor`, `health` and an apply wherever the file area runs audit-only.
 */
export const FILE_FALLBACK_COVERAGE = "the open tracepoints report opens only: an open of a denied file " +
  "(file.open) and an open for writing of a protected one (file.write open-write); a change made without " +
  "opening (truncate, unlink, rename, link, chmod, chown, utimes, xattrs) and a new, removed or renamed entry " +
  "in a protected directory are neither refused nor reported; a trusted writer's (files.writers) open for " +
  "writing is not reported, and its replace by rename passes nothing on until the next apply";

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
  // files.protect (file.write): the hooks above, and a protected directory's entries; each stops at the
  // generation's switch when the policy protects nothing
  PROGRAMS.inodeCreate,
  PROGRAMS.inodeMkdir,
  PROGRAMS.inodeSymlink,
  PROGRAMS.inodeMknod,
  PROGRAMS.inodeRmdir,
  PROGRAMS.sbMount,
  PROGRAMS.moveMount,
];
/**
 * File-area BPF-LSM programs of hooks some supported kernels lack (by hook name): loaded and attached with
 * FILE_LSM_PROGRAMS where this kernel has the hook, never required of a plane. POSIX ACL changes pass
 * inode_setxattr before 6.2 and these hooks from 6.2 on.
 */
const FILE_LSM_OPTIONAL: Readonly<Partial<Record<ProgramName, string>>> = {
  [PROGRAMS.inodeSetAcl]: "inode_set_acl",
  [PROGRAMS.inodeRemoveAcl]: "inode_remove_acl",
};

let optional: ProgramName[] | undefined;

/** The programs of FILE_LSM_OPTIONAL whose hook this kernel has (its BTF names bpf_lsm_HOOK), once a process. */
export function optionalLsmPrograms(): readonly ProgramName[] {
  optional ??= (Object.entries(FILE_LSM_OPTIONAL) as [ProgramName, string][]).filter(([, hook]) =>
    fileContains("/sys/kernel/btf/vmlinux", new TextEncoder().encode(`\0bpf_lsm_${hook}\0`))
  ).map(([name]) => name);
  return optional;
}

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
/**
 * The identity guard: attached with any BPF-LSM program; it decides only while the live generation names
 * programs (AEGIS_RULE_IDENTITY_GUARD), and returns at once for any prctl but PR_SET_MM's exe changes.
 * Where BPF-LSM does not load, a tracepoint reports those calls (with the egress, bind and file areas,
 * whose rules and writers name programs).
 */
export const IDENTITY_PROGRAMS = { lsm: [PROGRAMS.taskPrctl], fallback: [PROGRAMS.prctlAudit] } as const;
export const LSM_PROGRAMS: readonly ProgramName[] = [
  ...FILE_LSM_PROGRAMS,
  ...EXEC_LSM_PROGRAMS,
  ...GUARD_LSM_PROGRAMS,
  ...PTRACE_LSM_PROGRAMS,
  ...IDENTITY_PROGRAMS.lsm,
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
    PROGRAMS.dnsAnswers,
  ],
  bind: [PROGRAMS.bind4, PROGRAMS.bind6],
};
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

/**
 * The units a plane loads, pins and records (each with its BUILD_PROGRAMS bit): a plane loads the sets of
 * the areas it serves (`planeSets`), in one object load; a later command that needs a set the pins lack
 * loads that set alone. The forward program is loaded when a policy first forwards (PlanePrograms.prepare).
 */
export const PROGRAM_SETS = {
  fileLsm: { bit: BUILD_PROGRAMS.FILE_LSM, programs: FILE_LSM_PROGRAMS },
  fileAudit: { bit: BUILD_PROGRAMS.FILE_AUDIT, programs: FILE_AUDIT_PROGRAMS },
  execLsm: { bit: BUILD_PROGRAMS.EXEC_LSM, programs: EXEC_LSM_PROGRAMS },
  execAudit: { bit: BUILD_PROGRAMS.EXEC_AUDIT, programs: EXEC_AUDIT_PROGRAMS },
  renameLsm: { bit: BUILD_PROGRAMS.RENAME_LSM, programs: GUARD_LSM_PROGRAMS },
  // The scope guard is attached while the live policy has a scope, whatever its areas (see DataPlane.apply).
  guardsLsm: {
    bit: BUILD_PROGRAMS.GUARDS_LSM,
    programs: [...PTRACE_LSM_PROGRAMS, ...IDENTITY_PROGRAMS.lsm, PROGRAMS.scopeGuard],
  },
  identityAudit: { bit: BUILD_PROGRAMS.IDENTITY_AUDIT, programs: IDENTITY_PROGRAMS.fallback },
  egress: { bit: BUILD_PROGRAMS.EGRESS, programs: CGROUP_PROGRAMS.egress },
  egressLsm: { bit: BUILD_PROGRAMS.EGRESS_LSM, programs: EGRESS_LSM_PROGRAMS.lsm },
  egressAudit: { bit: BUILD_PROGRAMS.EGRESS_AUDIT, programs: EGRESS_LSM_PROGRAMS.fallback },
  bind: { bit: BUILD_PROGRAMS.BIND, programs: CGROUP_PROGRAMS.bind },
  bindLsm: { bit: BUILD_PROGRAMS.BIND_LSM, programs: BIND_LSM_PROGRAMS },
  ingress: { bit: BUILD_PROGRAMS.INGRESS, programs: [PROGRAMS.ingress, PROGRAMS.flushRates] },
  // Not an area's: loaded where a link or filter runs it, or when a policy first forwards.
  forward: { bit: BUILD_PROGRAMS.FORWARD, programs: [PROGRAMS.forward] },
} as const satisfies Record<string, { bit: number; programs: readonly ProgramName[] }>;
export type ProgramSet = keyof typeof PROGRAM_SETS;

/** The bits of the sets made of BPF-LSM programs: one recorded means BPF-LSM loads in this boot. */
const LSM_SET_BITS = BUILD_PROGRAMS.FILE_LSM | BUILD_PROGRAMS.EXEC_LSM | BUILD_PROGRAMS.RENAME_LSM |
  BUILD_PROGRAMS.GUARDS_LSM | BUILD_PROGRAMS.EGRESS_LSM | BUILD_PROGRAMS.BIND_LSM;

/** The sets a plane serving `areas` loads: with the BPF-LSM programs where they load, else the fallbacks. */
export function planeSets(areas: ReadonlySet<Area>, withLsm: boolean): ProgramSet[] {
  const sets = new Set<ProgramSet>();
  if (areas.has("file")) sets.add(withLsm ? "fileLsm" : "fileAudit");
  if (areas.has("exec")) sets.add(withLsm ? "execLsm" : "execAudit");
  if (withLsm && (areas.has("file") || areas.has("exec"))) sets.add("renameLsm");
  if (areas.has("egress")) {
    sets.add("egress");
    sets.add(withLsm ? "egressLsm" : "egressAudit");
  }
  if (areas.has("bind")) {
    sets.add("bind");
    if (withLsm) sets.add("bindLsm");
  }
  if (withLsm) sets.add("guardsLsm");
  else if (areas.has("egress") || areas.has("bind") || areas.has("file")) sets.add("identityAudit");
  if (areas.has("ingress")) sets.add("ingress");
  return [...sets];
}

/** The programs of `sets`. */
export function setPrograms(sets: readonly ProgramSet[]): ProgramName[] {
  const programs = sets.flatMap((set) => PROGRAM_SETS[set].programs);
  return sets.includes("fileLsm") ? [...programs, ...optionalLsmPrograms()] : programs;
}

/**
 * The sets of the programs the links and tc filters pinned under `pinDir` run (another build's, before a
 * hand-over moves them to this build's), those of BPF-LSM only where it loads: a link of a set not loaded
 * keeps running what it runs.
 */
function linkedSets(pinDir: string, withLsm: boolean): ProgramSet[] {
  const programs = new Set([
    ...listDir(`${pinDir}/links`).map((name) => name.split("@")[0]),
    ...recordedFilters(pinDir).map((name) => name.split("@")[0]),
  ]);
  return (Object.keys(PROGRAM_SETS) as ProgramSet[]).filter((set) =>
    (withLsm || (PROGRAM_SETS[set].bit & LSM_SET_BITS) === 0) &&
    PROGRAM_SETS[set].programs.some((name) => programs.has(name))
  );
}

function setBits(sets: readonly ProgramSet[]): number {
  return sets.reduce((bits, set) => bits | PROGRAM_SETS[set].bit, 0);
}

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

/** What a build record of this object says of BPF-LSM in this boot; undefined when it has not been asked. */
function recordedLsm(record: BuildRecord): LsmProbe | undefined {
  if ((record.programs & LSM_SET_BITS) !== 0) return { ok: true };
  if ((record.programs & BUILD_PROGRAMS.LSM_REFUSED) === 0) return undefined;
  return lsmProbeFailure(new BpfError("bpf_object__load", record.lsmErrno), activeLsms());
}

/**
 * Whether this kernel loads BPF-LSM programs: from the build record pinned under `pinDir` where it names
 * this build's object (an earlier load in this boot found out), else by a probe load (`probeLsm`).
 */
export function probeLsmAt(pinDir: string | undefined): LsmProbe {
  if (pinDir !== undefined) {
    const record = readBuildRecord(`${pinDir}/maps`);
    if (record && sameFingerprint(record.sha256, objectFingerprint(aegisObjectImage()))) {
      const known = recordedLsm(record);
      if (known) return known;
    }
  }
  return probeLsm();
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

/**
 * Why file and exec rules cannot be enforced with BPF-LSM here, or undefined when they can. `known`: whether
 * the BPF-LSM programs load in this boot, as the pins' build record says: no probe then.
 */
function lsmUnavailableReason(lsm: "auto" | "off", known: LsmProbe | undefined): string | undefined {
  if (lsm === "off") return "BPF-LSM disabled by configuration";
  const probe = known ?? probeLsm();
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
  known?: LsmProbe,
): { status: Record<Area, AreaStatus>; withLsm: boolean } {
  const status: Record<Area, AreaStatus> = {
    file: { mode: "enforce" },
    exec: { mode: "enforce" },
    egress: { mode: "enforce" },
    bind: { mode: "enforce" },
    ingress: { mode: "enforce" },
  };
  const wantsFileLsm = areas.has("file") || areas.has("exec");
  const wantsLsm = wantsLsmArea(areas);
  const reason = wantsLsm ? lsmUnavailableReason(lsm, known) : undefined;
  if (reason !== undefined && wantsFileLsm) {
    status.file = { mode: "audit-only", reason: `${reason}; ${FILE_FALLBACK_COVERAGE}` };
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

export type LoadedPlane = {
  /** The object: its maps are the pinned ones; its programs are loaded only when `programs` is not adopted. */
  object: BpfObject;
  programs: PlanePrograms;
  status: Record<Area, AreaStatus>;
};

/**
 * Opens the plane's object with its maps pinned under `<pinDir>/maps` (reusing maps pinned there), in one
 * attempt. Where the pins were made from this very object (its build record) with the same maps, adopts
 * every program set the areas need that the record says is pinned (no program of it is loaded), and loads
 * the sets it lacks, in one object load, pinning and recording them. Otherwise loads the sets of the areas
 * (the BPF-LSM ones where the probe says they load, the audit tracepoints otherwise), hands the pins over
 * when an object with other maps made them, moves the links of another build's programs to its own, pins
 * every program it loaded and records its build.
 */
export function loadPlane(pinDir: string, options: LoadOptions): LoadedPlane {
  const image = options.image ?? aegisObjectImage();
  const sha256 = objectFingerprint(image);
  const mapDir = `${pinDir}/maps`;
  const record = readBuildRecord(mapDir);
  const ours = record !== undefined && sameFingerprint(record.sha256, sha256);
  // Whether BPF-LSM loads is settled for the boot: an earlier load's record answers without a probe.
  const lsmAreas = wantsLsmArea(options.areas);
  let probe = ours ? recordedLsm(record) : undefined;
  if (probe === undefined && lsmAreas && options.lsm === "auto") probe = probeLsm();
  const { status, withLsm } = planeStatus(options.areas, options.lsm, probe);
  const sets = planeSets(options.areas, withLsm);
  const open = (dir: string, list: readonly ProgramName[]) => {
    const object = openAegisObject(list, dir, image);
    try {
      if (options.ringBufferBytes !== undefined) object.setMaxEntries("events", options.ringBufferBytes);
    } catch (error) {
      object.close();
      throw error;
    }
    return object;
  };
  const load = (list: readonly ProgramName[]) => open(mapDir, list).load();
  const bitsWith = (base: number) => {
    let bits = base;
    let lsmErrno = ours ? record.lsmErrno : 0;
    if (probe?.ok) bits &= ~BUILD_PROGRAMS.LSM_REFUSED;
    else if (probe && LASTING_REFUSALS.has(probe.errnoName)) {
      bits |= BUILD_PROGRAMS.LSM_REFUSED;
      lsmErrno = probe.errno;
    }
    return { sha256, programs: bits, lsmErrno };
  };
  if (ours) {
    const maps = open(mapDir, []);
    const definitions = maps.mapDefinitions();
    const pinned = [...definitions.keys()].filter((name) => !name.includes("."));
    if (
      pinned.every((name) => exists(`${mapDir}/${name}`)) && changedMaps(mapDir, definitions).length === 0
    ) {
      const missing = sets.filter((set) =>
        (record.programs & PROGRAM_SETS[set].bit) === 0 ||
        !PROGRAM_SETS[set].programs.every((name) => exists(`${pinDir}/progs/${name}`))
      );
      const programs = setPrograms(missing);
      // Nothing to load (the common case: every program this plane needs is pinned): the maps are taken from
      // their pins as they are, without loading the object.
      const object = programs.length === 0 ? maps.adoptPinnedMaps(mapDir) : maps.loadOnly(programs).load();
      try {
        if (missing.length > 0 || bitsWith(record.programs).programs !== record.programs) {
          recordBuild(pinDir, object, programs, bitsWith(record.programs | setBits(missing)));
        }
      } catch (error) {
        object.close();
        throw error;
      }
      const served = setPrograms(sets);
      return { object, programs: new AdoptedPrograms(pinDir, served, load, { object, programs }), status };
    }
    maps.close();
  }
  // A load that takes the pins over from another build or object also loads what the pinned links run.
  const loadedSets = ours ? sets : [...new Set([...sets, ...linkedSets(pinDir, withLsm)])];
  const programs = setPrograms(loadedSets);
  const first = open(mapDir, programs);
  const declared = [...first.mapDefinitions().keys()];
  let object: BpfObject;
  // Pins made by a release whose maps differ cannot be reused as they are: hand them over instead.
  if (changedMaps(mapDir, first.mapDefinitions()).length > 0) {
    first.close();
    object = handOver(pinDir, (dir) => open(dir, programs).load());
  } else {
    object = first.load();
    if (!ours) {
      // The links pinned here run another build's programs (or an unrecorded one's): this build's take over.
      writeBuildRecord(object.map(BUILD_MAP), undefined);
      if (listDir(`${pinDir}/links`).length > 0) moveLinks(`${pinDir}/links`, object);
      moveFilters(pinDir, object);
    }
  }
  // Programs pinned before use the maps they were loaded with: none of them is recorded as this load's.
  const kept = ours ? record.programs & BUILD_PROGRAMS.LSM_REFUSED : 0;
  try {
    if (!ours) removeRetiredMaps(mapDir, declared);
    recordBuild(pinDir, object, programs, bitsWith(kept | setBits(loadedSets)));
  } catch (error) {
    object.close();
    throw error;
  }
  return { object, programs: new LoadedPrograms(object, programs, load), status };
}

/**
 * Unpins the maps an earlier build pinned under `mapDir` that this object does not declare (a map a release
 * dropped): no program of this object uses them, and a pin would keep each for as long as the plane lives.
 */
function removeRetiredMaps(mapDir: string, declared: readonly string[]): void {
  const names = new Set(declared);
  for (const name of listDir(mapDir)) {
    if (names.has(name)) continue;
    try {
      Deno.removeSync(`${mapDir}/${name}`);
    } catch {
      // Best effort: a pin another process removed first is gone already, and anything else left (something
      // not a pin, a directory someone made there) costs only what it holds until `aegisbpf detach` removes
      // the pin directory; refusing the load for it would stop every later apply.
    }
  }
}

/**
 * Errnos of a BPF-LSM load that last the boot (the kernel was built or booted without it, or refuses the
 * program type): recorded, so that later commands need no probe. Others (ENOMEM, EAGAIN...) are asked again.
 */
const LASTING_REFUSALS: ReadonlySet<string> = new Set([
  "EPERM",
  "EINVAL",
  "EOPNOTSUPP",
  "ENOTSUPP",
  "ENOENT",
  "ESRCH",
]);

/** Whether any of `areas` is served by BPF-LSM programs where they load (file, exec, egress, bind). */
export function wantsLsmArea(areas: ReadonlySet<Area>): boolean {
  return areas.has("file") || areas.has("exec") || areas.has("egress") || areas.has("bind");
}

/**
 * Pins every program of `object` in `programs` under `<pinDir>/progs/` (in place of what was pinned there)
 * and then writes the build record: a later process of this build adopts them.
 */
function recordBuild(
  pinDir: string,
  object: BpfObject,
  programs: readonly ProgramName[],
  record: BuildRecord,
): void {
  for (const name of programs) {
    const path = `${pinDir}/progs/${name}`;
    if (exists(path)) Deno.removeSync(path);
    object.program(name).pin(path);
  }
  writeBuildRecord(object.map(BUILD_MAP), record);
}
