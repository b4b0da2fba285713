/**
 * The host facts `doctor` reports beside the probe loads: lockdown, BTF, bpffs, cgroup v2, active LSMs,
 * libbpf, capabilities, and who may write aegisbpf's directories. Parsers are pure; `hostChecks` reads.
 */

import { findCgroup2Mount } from "../kernel/cgroup.ts";
import { libbpfVersion } from "../kernel/info.ts";
import { isMounted, PSEUDO_FILESYSTEMS } from "../kernel/mounts.ts";
import { exists } from "../kernel/pin_dir.ts";
import { accessOf } from "../state/access.ts";
import { forwardingCheck, readForwardingFacts } from "./forwarding_check.ts";

export type CheckStatus = "ok" | "warn" | "fail";
export type Check = { name: string; status: CheckStatus; detail: string; remediation?: string };

/** Capability names by bit (linux/capability.h), without the CAP_ prefix, lower case. */
const CAPABILITIES = [
  "chown",
  "dac_override",
  "dac_read_search",
  "fowner",
  "fsetid",
  "kill",
  "setgid",
  "setuid",
  "setpcap",
  "linux_immutable",
  "net_bind_service",
  "net_broadcast",
  "net_admin",
  "net_raw",
  "ipc_lock",
  "ipc_owner",
  "sys_module",
  "sys_rawio",
  "sys_chroot",
  "sys_ptrace",
  "sys_pacct",
  "sys_admin",
  "sys_boot",
  "sys_nice",
  "sys_resource",
  "sys_time",
  "sys_tty_config",
  "mknod",
  "lease",
  "audit_write",
  "audit_control",
  "setfcap",
  "mac_override",
  "mac_admin",
  "syslog",
  "wake_alarm",
  "block_suspend",
  "audit_read",
  "perfmon",
  "bpf",
  "checkpoint_restore",
] as const;

/** What loading, pinning and attaching need: BPF and tracing, network hooks, mounts and cgroup attach. */
export const NEEDED_CAPABILITIES = ["bpf", "perfmon", "net_admin", "sys_admin"] as const;

/** The effective capabilities in /proc/self/status text, by name (`cap_N` for a bit this table lacks). */
export function effectiveCapabilities(procStatus: string): string[] {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(procStatus)?.[1];
  if (hex === undefined) throw new Error("/proc/self/status has no CapEff line");
  const mask = BigInt(`0x${hex}`);
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(CAPABILITIES[bit] ?? `cap_${bit}`);
  }
  return names;
}

/** The selected mode of /sys/kernel/security/lockdown text: `none [integrity] confidentiality`. */
export function lockdownMode(text: string): string | undefined {
  return /\[([a-z]+)\]/.exec(text)?.[1];
}

/** The filesystem type of the mount holding `path` (the longest mount point that contains it). */
export function mountTypeOf(procMounts: string, path: string): string | undefined {
  let best: { point: string; type: string } | undefined;
  for (const line of procMounts.split("\n")) {
    const [, point, type] = line.split(" ");
    if (!point || !type) continue;
    const inside = path === point || path.startsWith(point.endsWith("/") ? point : `${point}/`);
    if (inside && (best === undefined || point.length >= best.point.length)) best = { point, type };
  }
  return best?.type;
}

function directoryCheck(name: string, path: string, absent: string): Check {
  return { name, ...(accessOf(path, "directory") ?? { status: "ok", detail: `${path}: ${absent}` }) };
}

/** The keys directory and every key in it: a key anyone may replace is a key anyone may trust. */
function keysCheck(path: string): Check {
  const check = directoryCheck("trusted keys", path, "absent: no key is trusted");
  if (check.status === "fail" || !check.detail.includes("mode")) return check;
  for (const entry of Deno.readDirSync(path)) {
    const finding = accessOf(`${path}/${entry.name}`, "key");
    if (finding?.status === "fail") return { name: "trusted keys", ...finding };
  }
  return check;
}

/**
 * Where node_exporter's textfile collector reads, when the operator names none: Debian's and Ubuntu's
 * prometheus-node-exporter package first (its --collector.textfile.directory), then upstream's convention.
 */
export const TEXTFILE_DIRS = [
  "/var/lib/prometheus/node-exporter",
  "/var/lib/node_exporter/textfile_collector",
];

/** `textfileDir`: the directory `--textfile-dir` names; undefined looks for the known ones. */
export type CheckPaths = {
  bpffs: string;
  stateDir: string;
  configDir: string;
  textfileDir?: string | undefined;
};

/** Every host check, in the order doctor prints them. */
export function hostChecks(paths: CheckPaths, facts: { activeLsms: readonly string[] | undefined }): Check[] {
  const mounts = Deno.readTextFileSync("/proc/mounts");
  const checks: Check[] = [{ name: "kernel", status: "ok", detail: Deno.osRelease() }];
  const libbpf = libbpfVersion();
  checks.push(
    Number(libbpf.split(".")[0]) >= 1 ? { name: "libbpf", status: "ok", detail: `libbpf.so ${libbpf}` } : {
      name: "libbpf",
      status: "fail",
      detail: `libbpf.so ${libbpf}`,
      remediation: "install libbpf 1.0 or later",
    },
  );
  const caps = effectiveCapabilities(Deno.readTextFileSync("/proc/self/status"));
  const missing = NEEDED_CAPABILITIES.filter((cap) => !caps.includes(cap));
  checks.push(
    missing.length === 0
      ? {
        name: "capabilities",
        status: "ok",
        detail: `effective: ${NEEDED_CAPABILITIES.join(", ")} and more`,
      }
      : {
        name: "capabilities",
        status: "fail",
        detail: `missing ${missing.map((cap) => `CAP_${cap.toUpperCase()}`).join(", ")}`,
        remediation: "run as root, or grant those capabilities",
      },
  );
  checks.push(lockdownCheck());
  checks.push(
    exists("/sys/kernel/btf/vmlinux") ? { name: "BTF", status: "ok", detail: "/sys/kernel/btf/vmlinux" } : {
      name: "BTF",
      status: "fail",
      detail: "/sys/kernel/btf/vmlinux is missing: CO-RE programs cannot be relocated",
      remediation: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    },
  );
  checks.push(
    facts.activeLsms === undefined
      ? {
        name: "active LSMs",
        status: "warn",
        detail: "/sys/kernel/security/lsm cannot be read",
        remediation: "mount securityfs (mount -t securityfs securityfs /sys/kernel/security)",
      }
      : facts.activeLsms.includes("bpf")
      ? { name: "active LSMs", status: "ok", detail: facts.activeLsms.join(",") }
      : {
        name: "active LSMs",
        status: "warn",
        detail: `${facts.activeLsms.join(",")}: bpf is not listed`,
        remediation: `add lsm=${facts.activeLsms.join(",")},bpf to the kernel command line`,
      },
  );
  const bpffsType = mountTypeOf(mounts, paths.bpffs);
  checks.push(
    bpffsType === "bpf" ? { name: "bpffs", status: "ok", detail: `${paths.bpffs} is on a bpf filesystem` } : {
      name: "bpffs",
      status: "fail",
      detail: `${paths.bpffs} is not on a bpf filesystem (${
        bpffsType ?? "not mounted"
      }): nothing can be pinned`,
      remediation: `mount -t bpf bpf ${paths.bpffs}`,
    },
  );
  const cgroup2 = findCgroup2Mount(mounts);
  checks.push(
    cgroup2 === undefined
      ? {
        name: "cgroup v2",
        status: "fail",
        detail: "no cgroup2 entry in /proc/mounts",
        remediation:
          "mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with systemd.unified_cgroup_hierarchy=1",
      }
      : { name: "cgroup v2", status: "ok", detail: `mounted at ${cgroup2}` },
  );
  checks.push(
    isMounted(mounts, "tracefs", PSEUDO_FILESYSTEMS.tracefs)
      ? { name: "tracefs", status: "ok", detail: PSEUDO_FILESYSTEMS.tracefs }
      : {
        name: "tracefs",
        status: "ok",
        detail:
          `not mounted at ${PSEUDO_FILESYSTEMS.tracefs}; aegisbpf mounts it to attach the audit tracepoints`,
      },
  );
  checks.push(directoryCheck("state directory", paths.stateDir, "absent: made (0700) by the first apply"));
  checks.push(directoryCheck("config directory", paths.configDir, "absent: made (0700) when first needed"));
  checks.push(keysCheck(`${paths.configDir}/keys`));
  checks.push(textfileCheck(paths.textfileDir ?? findTextfileDir(TEXTFILE_DIRS)));
  checks.push(forwardingCheck(readForwardingFacts(paths)));
  return checks;
}

function lockdownCheck(): Check {
  let text: string;
  try {
    text = Deno.readTextFileSync("/sys/kernel/security/lockdown");
  } catch {
    return { name: "lockdown", status: "ok", detail: "no lockdown LSM (or securityfs not mounted)" };
  }
  const mode = lockdownMode(text) ?? text.trim();
  if (mode === "confidentiality") {
    return {
      name: "lockdown",
      status: "warn",
      detail: "confidentiality: kernel memory reads from BPF are refused; the audit tracepoints may not load",
      remediation: "boot with lockdown=integrity (or none) where file and exec must be audited",
    };
  }
  return { name: "lockdown", status: "ok", detail: mode };
}

/** The first of `candidates` that exists, or all of them when none does. */
export function findTextfileDir(candidates: readonly string[]): string | readonly string[] {
  return candidates.find((dir) => {
    try {
      return Deno.statSync(dir).isDirectory;
    } catch {
      return false;
    }
  }) ?? candidates;
}

function textfileCheck(found: string | readonly string[]): Check {
  const name = "textfile directory";
  if (typeof found !== "string") {
    return {
      name,
      status: "warn",
      detail: `none of ${found.join(", ")} exists: metrics --out has nowhere to write for node_exporter`,
      remediation: "install prometheus-node-exporter (Debian: /var/lib/prometheus/node-exporter), or give " +
        "node_exporter's --collector.textfile.directory with --textfile-dir DIR",
    };
  }
  const path = found;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return {
      name,
      status: "warn",
      detail: `${path} does not exist: metrics --out has nowhere to write for node_exporter`,
      remediation: `install prometheus-node-exporter, or mkdir -p ${path}`,
    };
  }
  if (!info.isDirectory) return { name, status: "fail", detail: `${path} is not a directory` };
  const mode = (info.mode ?? 0) & 0o7777;
  if (mode & 0o002 && !(mode & 0o1000)) {
    return {
      name,
      status: "warn",
      detail: `${path} is world-writable (mode 0${mode.toString(8)}): anyone can replace aegisbpf.prom`,
      remediation: `chmod o-w ${path}`,
    };
  }
  return { name, status: "ok", detail: path };
}
