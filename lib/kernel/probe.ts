/**
 * What this kernel can do for each area, found by loading, not by reading configuration: every program of
 * the built object is loaded on its own (no pins, nothing attached) and closed, and the object's maps (ring
 * buffer, maps of maps, LPM tries, hashes, per-CPU arrays) are created once with no program. The verdict
 * per area then follows from those loads and a few host facts (active LSMs, cgroup v2).
 */

import { BpfError } from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import { findCgroup2Mount } from "./cgroup.ts";
import {
  activeLsms,
  BIND_LSM_PROGRAMS,
  CGROUP_PROGRAMS,
  EXEC_AUDIT_PROGRAMS,
  FILE_AUDIT_PROGRAMS,
  FILE_FALLBACK_COVERAGE,
  lsmProbeFailure,
} from "./load.ts";
import { openAegisObject, type ProgramName, PROGRAMS } from "./object.ts";

export const AREAS: readonly Area[] = ["file", "exec", "egress", "bind", "ingress"];

/** The program type each program of the object is, as a person names it. */
export const PROGRAM_KINDS: Readonly<Record<ProgramName, string>> = {
  [PROGRAMS.fileOpen]: "BPF-LSM lsm/file_open",
  [PROGRAMS.exec]: "BPF-LSM lsm/bprm_check_security",
  [PROGRAMS.fileOpenAudit]: "tracepoint syscalls/sys_exit_openat",
  [PROGRAMS.fileOpenLegacyAudit]: "tracepoint syscalls/sys_exit_open",
  [PROGRAMS.fileOpenat2Audit]: "tracepoint syscalls/sys_exit_openat2",
  [PROGRAMS.execAudit]: "tracepoint sched/sched_process_exec",
  [PROGRAMS.memfdExec]: "BPF-LSM lsm/bprm_check_security (memory-only files)",
  [PROGRAMS.mmapFile]: "BPF-LSM lsm/mmap_file",
  [PROGRAMS.fileMprotect]: "BPF-LSM lsm/file_mprotect",
  [PROGRAMS.fileReceive]: "BPF-LSM lsm/file_receive",
  [PROGRAMS.inodeRename]: "BPF-LSM lsm/inode_rename",
  [PROGRAMS.scopeGuard]: "BPF-LSM lsm/inode_permission (cgroup moves)",
  [PROGRAMS.ptraceAccess]: "BPF-LSM lsm/ptrace_access_check (ptrace, process_vm_*, /proc/PID/mem)",
  [PROGRAMS.ptraceTraceme]: "BPF-LSM lsm/ptrace_traceme",
  [PROGRAMS.taskPrctl]: "BPF-LSM lsm/task_prctl (PR_SET_MM: a task changing its executable)",
  [PROGRAMS.prctlAudit]: "tracepoint syscalls/sys_enter_prctl (PR_SET_MM, reported only)",
  [PROGRAMS.inodeSetattr]: "BPF-LSM lsm/inode_setattr (truncate, chmod, chown, utimes)",
  [PROGRAMS.inodeUnlink]: "BPF-LSM lsm/inode_unlink",
  [PROGRAMS.inodeLink]: "BPF-LSM lsm/inode_link",
  [PROGRAMS.inodeSetxattr]: "BPF-LSM lsm/inode_setxattr",
  [PROGRAMS.inodeRemovexattr]: "BPF-LSM lsm/inode_removexattr",
  [PROGRAMS.inodeCreate]: "BPF-LSM lsm/inode_create (files.protect)",
  [PROGRAMS.inodeMkdir]: "BPF-LSM lsm/inode_mkdir (files.protect)",
  [PROGRAMS.inodeSymlink]: "BPF-LSM lsm/inode_symlink (files.protect)",
  [PROGRAMS.inodeMknod]: "BPF-LSM lsm/inode_mknod (files.protect)",
  [PROGRAMS.inodeRmdir]: "BPF-LSM lsm/inode_rmdir (files.protect)",
  [PROGRAMS.inodeSetAcl]: "BPF-LSM lsm/inode_set_acl (POSIX ACLs, 6.2 and later)",
  [PROGRAMS.inodeRemoveAcl]: "BPF-LSM lsm/inode_remove_acl (POSIX ACLs, 6.2 and later)",
  [PROGRAMS.sbMount]: "BPF-LSM lsm/sb_mount (files.protect: mounts over a protected path)",
  [PROGRAMS.moveMount]: "BPF-LSM lsm/move_mount (files.protect: mounts over a protected path)",
  [PROGRAMS.packetEgress]: "cgroup_skb/egress (raw, ping, SCTP, UDP-Lite packets)",
  [PROGRAMS.dnsAnswers]: "cgroup_skb/ingress (DNS answers learned for rules by name)",
  [PROGRAMS.setsockopt]: "cgroup/setsockopt (routing headers and source routes)",
  [PROGRAMS.packetSocket]: "BPF-LSM lsm/socket_create (AF_PACKET)",
  [PROGRAMS.packetSocketAudit]: "tracepoint syscalls/sys_enter_socket",
  [PROGRAMS.sctpConnect]: "BPF-LSM lsm/sctp_bind_connect (SCTP)",
  [PROGRAMS.sctpSocketConnect]: "BPF-LSM lsm/socket_connect (SCTP)",
  [PROGRAMS.sweepTcp]: "iterator iter/tcp (connections made before apply)",
  [PROGRAMS.sweepUdp]: "iterator iter/udp (connections made before apply)",
  [PROGRAMS.listTcp]: "iterator iter/tcp (lists connections where sockets cannot be destroyed)",
  [PROGRAMS.listUdp]: "iterator iter/udp (lists connections where sockets cannot be destroyed)",
  [PROGRAMS.connect4]: "cgroup sock_addr connect4",
  [PROGRAMS.connect6]: "cgroup sock_addr connect6",
  [PROGRAMS.sendmsg4]: "cgroup sock_addr sendmsg4",
  [PROGRAMS.sendmsg6]: "cgroup sock_addr sendmsg6",
  [PROGRAMS.bind4]: "cgroup sock_addr bind4",
  [PROGRAMS.bind6]: "cgroup sock_addr bind6",
  [PROGRAMS.socketBind]: "BPF-LSM lsm/socket_bind (SCTP)",
  [PROGRAMS.sctpBindx]: "BPF-LSM lsm/sctp_bind_connect (sctp_bindx)",
  [PROGRAMS.ingress]: "XDP",
  [PROGRAMS.flushRates]: "XDP (test run: rate-limit flush)",
  [PROGRAMS.forward]: "tc egress (tcx link, or a classic tc filter before Linux 6.6: forwarded packets)",
};

/** The outcome of one probe load: a program, or the maps alone. */
export type LoadProbe =
  | { name: string; kind: string; ok: true; ms: number }
  | { name: string; kind: string; ok: false; ms: number; errno: number; errnoName: string; error: string };

/** The map types of the object, named as a person names them. */
const MAP_KINDS = "array, hash, LPM trie, array of maps, per-CPU array, ring buffer";

/** Host facts the verdicts need beside the loads. */
export type HostFacts = {
  /** /sys/kernel/security/lsm, or undefined when securityfs cannot be read. */
  activeLsms: readonly string[] | undefined;
  /** Where cgroup v2 is mounted, or undefined. */
  cgroup2: string | undefined;
};

export type Verdict = "enforce" | "audit-only" | "unavailable";
export type AreaVerdict = { verdict: Verdict; reason: string; remediation: string };
export type AreaVerdicts = Record<Area, AreaVerdict>;

/** Loads the maps alone, then every program of the object alone; each object is closed at once. */
export function probeLoads(image?: Uint8Array<ArrayBuffer>): LoadProbe[] {
  const probes = [probeLoad("maps", MAP_KINDS, [], image)];
  const open = openAegisObject([], undefined, image);
  let names: string[];
  try {
    names = open.programNames();
  } finally {
    open.close();
  }
  for (const name of names) {
    const kind = (PROGRAM_KINDS as Record<string, string>)[name] ?? "unknown program type";
    probes.push(probeLoad(name, kind, [name as ProgramName], image));
  }
  return probes;
}

function probeLoad(
  name: string,
  kind: string,
  programs: readonly ProgramName[],
  image: Uint8Array<ArrayBuffer> | undefined,
): LoadProbe {
  const start = performance.now();
  const ms = () => Math.round((performance.now() - start) * 10) / 10;
  try {
    openAegisObject(programs, undefined, image).load().close();
    return { name, kind, ok: true, ms: ms() };
  } catch (error) {
    if (!(error instanceof BpfError)) throw error;
    const first = error.message.split("\n")[0] ?? error.message;
    return { name, kind, ok: false, ms: ms(), errno: error.errno, errnoName: error.errnoName, error: first };
  }
}

export function readHostFacts(): HostFacts {
  return { activeLsms: activeLsms(), cgroup2: findCgroup2Mount(Deno.readTextFileSync("/proc/mounts")) };
}

const ROOT = "run as root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)";

/** The verdict per area from the probe loads and host facts. Pure. */
export function decideAreas(probes: readonly LoadProbe[], facts: HostFacts): AreaVerdicts {
  const byName = new Map(probes.map((probe) => [probe.name, probe]));
  const failed = (names: readonly string[]) =>
    names.flatMap((name) => {
      const probe = byName.get(name);
      if (probe === undefined) return [{ name, why: "not in the BPF object", errnoName: "" }];
      return probe.ok ? [] : [{ name, why: probe.errnoName, errnoName: probe.errnoName }];
    });
  const describe = (failures: { name: string; why: string }[]) =>
    failures.map(({ name, why }) => `${name} ${why}`).join(", ");
  const fix = (failures: { errnoName: string }[], otherwise: string) =>
    failures.some((failure) => failure.errnoName === "EPERM") ? `${ROOT}; ${otherwise}` : otherwise;

  const common = failed(["maps", PROGRAMS.flushRates]);
  if (common.length > 0) {
    const verdict: AreaVerdict = {
      verdict: "unavailable",
      reason: `the BPF object cannot be loaded: ${describe(common)}`,
      remediation: fix(common, "check the kernel's BPF support (CONFIG_BPF_SYSCALL, BTF) and memlock limits"),
    };
    return { file: verdict, exec: verdict, egress: verdict, bind: verdict, ingress: verdict };
  }
  const inode = (lsm: ProgramName, audit: readonly ProgramName[]): AreaVerdict => {
    const lsmFailed = failed([lsm]);
    const auditFailed = failed(audit);
    const listed = facts.activeLsms?.includes("bpf");
    if (lsmFailed.length === 0 && listed) {
      return {
        verdict: "enforce",
        reason: `${lsm} loads and bpf is an active LSM`,
        remediation: "none needed",
      };
    }
    let why: string;
    let remedy: string;
    if (lsmFailed.length > 0) {
      const probe = byName.get(lsm);
      const error = new BpfError("probe", probe && !probe.ok ? probe.errno : 0);
      const refused = lsmProbeFailure(error, facts.activeLsms);
      why = refused.ok ? "" : refused.reason;
      remedy = listed
        ? "boot a kernel that lets BPF-LSM programs load (CONFIG_BPF_LSM=y, lsm=...,bpf, no policy refusing bpf)"
        : "boot with bpf in the active LSMs (lsm=...,bpf on the kernel command line)";
    } else if (facts.activeLsms === undefined) {
      why = "securityfs cannot be read: /sys/kernel/security/lsm is unknown";
      remedy = "mount securityfs (mount -t securityfs securityfs /sys/kernel/security)";
    } else {
      why = `BPF LSM not active (lsm=${facts.activeLsms.join(",")}): LSM programs would decide nothing`;
      remedy = `add bpf to the kernel command line: lsm=${facts.activeLsms.join(",")},bpf, and reboot`;
    }
    // The tracepoints see opens and execs: a denied or protected file's truncate, unlink, rename or attributes
    // are unseen, and so are entry changes in a protected directory. The exec tracepoint sees the program an
    // exec ends up running: not what is mapped executable later.
    const unseen = lsm === PROGRAMS.fileOpen
      ? ` (${FILE_FALLBACK_COVERAGE})`
      : " (execs only: a library or file mapped executable (dlopen, ld.so BIN, mmap or mprotect with " +
        "PROT_EXEC) and a #! script itself, whose interpreter is what runs, are neither refused nor reported)";
    if (auditFailed.length === 0) {
      return {
        verdict: "audit-only",
        reason: `${why}; audited through tracepoints${unseen}`,
        remediation: `${remedy}; until then ${lsm === PROGRAMS.fileOpen ? "file" : "exec"} rules only audit`,
      };
    }
    return {
      verdict: "unavailable",
      reason: `${why}; the tracepoint fallback does not load either (${describe(auditFailed)})`,
      remediation: fix(
        auditFailed,
        `${remedy}; the fallback needs BTF (/sys/kernel/btf/vmlinux) and tracepoints`,
      ),
    };
  };
  const cgroup = (programs: readonly ProgramName[]): AreaVerdict => {
    const failures = failed(programs);
    if (failures.length > 0) {
      return {
        verdict: "unavailable",
        reason: `cgroup programs do not load: ${describe(failures)}`,
        remediation: fix(failures, "use a kernel with cgroup sock_addr hooks (5.8 or later)"),
      };
    }
    if (facts.cgroup2 === undefined) {
      return {
        verdict: "unavailable",
        reason: "cgroup v2 is not mounted: no cgroup2 entry in /proc/mounts",
        remediation: "mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with " +
          "systemd.unified_cgroup_hierarchy=1",
      };
    }
    return {
      verdict: "enforce",
      reason: `${programs.join(", ")} load; cgroup v2 at ${facts.cgroup2}`,
      remediation: "none needed",
    };
  };
  const xdp = failed([PROGRAMS.ingress]);
  return {
    file: inode(PROGRAMS.fileOpen, FILE_AUDIT_PROGRAMS),
    exec: inode(PROGRAMS.exec, EXEC_AUDIT_PROGRAMS),
    egress: cgroup(CGROUP_PROGRAMS.egress),
    bind: sctpBinds(cgroup(CGROUP_PROGRAMS.bind), failed(BIND_LSM_PROGRAMS), facts),
    ingress: xdp.length === 0
      ? { verdict: "enforce", reason: `${PROGRAMS.ingress} loads`, remediation: "none needed" }
      : {
        verdict: "unavailable",
        reason: `the XDP program does not load: ${describe(xdp)}`,
        remediation: fix(xdp, "use a kernel with XDP (4.8 or later; generic mode needs no driver support)"),
      },
  };
}

/**
 * The bind verdict says when SCTP binds go unjudged: SCTP never reaches the cgroup bind hooks, and its LSM
 * hooks need BPF-LSM (loading, and bpf among the active LSMs).
 */
function sctpBinds(
  verdict: AreaVerdict,
  lsmFailures: readonly { name: string }[],
  facts: HostFacts,
): AreaVerdict {
  if (verdict.verdict !== "enforce") return verdict;
  const listed = facts.activeLsms?.includes("bpf") ?? false;
  if (lsmFailures.length === 0 && listed) {
    return { ...verdict, reason: `${verdict.reason}; SCTP binds by ${BIND_LSM_PROGRAMS.join(", ")}` };
  }
  const why = lsmFailures.length > 0
    ? `${lsmFailures.map((failure) => failure.name).join(", ")} do not load`
    : "bpf is not an active LSM";
  return {
    ...verdict,
    reason: `${verdict.reason}; SCTP binds are not judged (BPF-LSM: ${why})`,
    remediation: "none needed for TCP, UDP, UDP-Lite and DCCP; SCTP binds need BPF-LSM (lsm=...,bpf)",
  };
}

/**
 * The verdict per area on this kernel, from real loads: what `doctor` reports and what `run --enforce`
 * checks before it starts.
 */
export function probeAreas(): AreaVerdicts {
  return decideAreas(probeLoads(), readHostFacts());
}
