import { BpfError, BpfLink, closeFd, interfaceDriver, openDirectory } from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import {
  type AreaStatus,
  BIND_LSM_PROGRAMS,
  CGROUP_PROGRAMS,
  EGRESS_LSM_PROGRAMS,
  EXEC_LSM_PROGRAMS,
  FILE_AUDIT_PROGRAMS,
  FILE_LSM_PROGRAMS,
  GUARD_LSM_PROGRAMS,
  IDENTITY_PROGRAMS,
  LSM_PROGRAMS,
  optionalLsmPrograms,
  PTRACE_LSM_PROGRAMS,
} from "./load.ts";
import { ensureMounted } from "./mounts.ts";
import { type ProgramName, PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";
import type { PlanePrograms } from "./programs.ts";
import { attachFilter, filterRecordPath, filterStatus, recordedFilters, removeFilter } from "./tc_filter.ts";
import { xdpAttachMode, type XdpMode } from "./xdp_mode.ts";

/** The pinned link name of the XDP program on interface `ifname`. */
export function ingressLinkName(ifname: string): string {
  return `${PROGRAMS.ingress}@${ifname}`;
}

/** The pinned link name of the forwarded-traffic program on the egress of interface `ifname`. */
export function forwardLinkName(ifname: string): string {
  return `${PROGRAMS.forward}@${ifname}`;
}

/** Whether a kernel release (uname -r) is 6.6 or later, the first with tcx links. */
export function hasTcx(release: string): boolean {
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  return major > 6 || (major === 6 && minor >= 6);
}

/**
 * How aegis_forward is attached: "auto" as a tcx link where the kernel has them, else as a classic tc
 * filter (lib/kernel/tc_filter.ts); "legacy" always as a filter (tests only: not reachable from the CLI).
 */
export type ForwardAttach = "auto" | "legacy";

/**
 * The links of one plane, by pinned name (program name, or `aegis_xdp@IFACE`): each is adopted from its
 * pin under `<pinDir>/links` when an earlier process left one, or attached and pinned there.
 */
export class PlaneLinks {
  readonly #programs: PlanePrograms;
  readonly #pinDir: string;
  readonly #xdpMode: XdpMode;
  readonly #forwardAttach: ForwardAttach;
  readonly #links = new Map<string, BpfLink>();
  /** The classic tc filters of aegis_forward held (where there are no tcx links), by name. */
  readonly #filters = new Set<string>();

  constructor(
    programs: PlanePrograms,
    pinDir: string,
    xdpMode: XdpMode,
    forwardAttach: ForwardAttach = "auto",
  ) {
    this.#programs = programs;
    this.#pinDir = pinDir;
    this.#xdpMode = xdpMode;
    this.#forwardAttach = forwardAttach;
  }

  get names(): string[] {
    return [...this.#links.keys(), ...this.#filters].sort();
  }

  has(name: string): boolean {
    return this.#links.has(name) || this.#filters.has(name);
  }

  /** Attaches (or adopts) the programs of `areas` as `status` says they are served. */
  attachAreas(
    areas: ReadonlySet<Area>,
    status: Readonly<Record<Area, AreaStatus>>,
    cgroupPath: string,
  ): void {
    const programs: ProgramName[] = [];
    if (areas.has("file")) {
      programs.push(
        ...(status.file.mode === "enforce"
          ? [...FILE_LSM_PROGRAMS, ...optionalLsmPrograms()]
          : FILE_AUDIT_PROGRAMS),
      );
    }
    if (areas.has("exec")) {
      programs.push(...(status.exec.mode === "enforce" ? EXEC_LSM_PROGRAMS : [PROGRAMS.execAudit]));
    }
    if (programs.some((program) => LSM_PROGRAMS.includes(program))) programs.push(...GUARD_LSM_PROGRAMS);
    if (areas.has("egress")) {
      // The LSM hooks where they were loaded (BPF-LSM works here), else the reporting tracepoint.
      const lsm = this.#programs.has(EGRESS_LSM_PROGRAMS.lsm[0]);
      programs.push(...(lsm ? EGRESS_LSM_PROGRAMS.lsm : EGRESS_LSM_PROGRAMS.fallback));
    }
    if (areas.has("bind") && this.#programs.has(BIND_LSM_PROGRAMS[0]!)) {
      programs.push(...BIND_LSM_PROGRAMS);
    }
    const lsmOnly: readonly ProgramName[] = [
      ...LSM_PROGRAMS,
      ...EGRESS_LSM_PROGRAMS.lsm,
      ...BIND_LSM_PROGRAMS,
      ...PTRACE_LSM_PROGRAMS,
      ...IDENTITY_PROGRAMS.lsm,
    ];
    // The ptrace and identity guards go wherever BPF-LSM serves an area: a scope or an exe rule may come
    // with any policy. Without BPF-LSM, the identity guard's report goes with the areas whose rules name
    // programs (file: trusted writers).
    if (programs.some((program) => lsmOnly.includes(program))) {
      programs.push(...PTRACE_LSM_PROGRAMS, ...IDENTITY_PROGRAMS.lsm);
    } else if (areas.has("egress") || areas.has("bind") || areas.has("file")) {
      programs.push(...IDENTITY_PROGRAMS.fallback);
    }
    if (programs.some((program) => !lsmOnly.includes(program))) ensureMounted("tracefs");
    const cgroupPrograms = [
      ...(areas.has("egress") ? CGROUP_PROGRAMS.egress : []),
      ...(areas.has("bind") ? CGROUP_PROGRAMS.bind : []),
    ];
    // Every program no pinned link runs yet, loaded at once where this process has not loaded it.
    this.#programs.prepare(
      [...programs, ...cgroupPrograms].filter((name) => !exists(`${this.#pinDir}/links/${name}`)),
    );
    for (const program of programs) {
      this.#attach(program, () => this.#programs.attachable(program).attach());
    }
    // Ingress links and the scope guard pinned by an earlier process stay theirs to keep: adopt them too.
    for (const name of listDir(`${this.#pinDir}/links`)) {
      const adopt = name.startsWith(ingressLinkName("")) || name === PROGRAMS.scopeGuard ||
        name.startsWith(forwardLinkName(""));
      if (adopt && !this.#links.has(name)) {
        this.#links.set(name, BpfLink.open(`${this.#pinDir}/links/${name}`));
      }
    }
    // So are the forward filters an earlier process recorded (kernels without tcx).
    for (const name of recordedFilters(this.#pinDir)) this.#filters.add(name);
    if (cgroupPrograms.length === 0) return;
    const fd = openDirectory(cgroupPath);
    try {
      for (const program of cgroupPrograms) {
        this.#attach(program, () => this.#programs.attachable(program).attachCgroup(fd, cgroupPath));
      }
    } finally {
      closeFd(fd);
    }
  }

  /** Attaches the XDP program to an interface (adopting its pinned link if there is one). */
  attachInterface(ifindex: number, ifname: string): string {
    const name = ingressLinkName(ifname);
    this.#attach(name, () => this.#attachXdp(name, ifindex, ifname));
    return name;
  }

  /**
   * Whether the forward link of `ifname` is held and attached to interface `ifindex`. One that is not (its
   * interface deleted since, perhaps made anew under the name) serves nothing: it is removed.
   */
  hasForward(ifindex: number, ifname: string): boolean {
    const name = forwardLinkName(ifname);
    if (this.#filters.has(name)) {
      if (filterStatus(this.#pinDir, name, ifindex).attached) return true;
      this.remove(name);
      return false;
    }
    const held = this.#links.get(name);
    if (!held) return false;
    if (held.info().ifindex === ifindex) return true;
    this.remove(name);
    return false;
  }

  /**
   * Attaches the forwarded-traffic program to the egress of an interface: a tcx link (adopted when
   * pinned); where the kernel refuses tcx (before 6.6), a classic tc filter (adopted when recorded and
   * still in place).
   */
  attachForward(ifindex: number, ifname: string): string {
    const name = forwardLinkName(ifname);
    const path = `${this.#pinDir}/links/${name}`;
    if (
      this.#forwardAttach === "legacy" || this.#filters.has(name) ||
      exists(filterRecordPath(this.#pinDir, name))
    ) {
      this.#attachFilter(name, ifindex);
      return name;
    }
    try {
      this.#attach(name, () => this.#programs.attachable(PROGRAMS.forward).attachTcxEgress(ifindex, path));
    } catch (error) {
      if (!(error instanceof BpfError && error.errnoName === "EINVAL" && !hasTcx(Deno.osRelease()))) {
        throw error;
      }
      this.#attachFilter(name, ifindex);
    }
    return name;
  }

  /** The filter recorded as `name` where it is still attached on `ifindex`, else one attached anew. */
  #attachFilter(name: string, ifindex: number): void {
    if (!filterStatus(this.#pinDir, name, ifindex).attached) {
      attachFilter(this.#programs.runnable(PROGRAMS.forward), this.#pinDir, name, ifindex);
    }
    this.#filters.add(name);
  }

  /**
   * Attaches (or adopts) the scope guard where this object loaded it (BPF-LSM is available and file or exec
   * rules are served); false when it is not loaded here.
   */
  attachScopeGuard(): boolean {
    const name = PROGRAMS.scopeGuard;
    if (this.#links.has(name)) return true;
    if (!this.#programs.has(name)) return false;
    this.#attach(name, () => this.#programs.attachable(name).attach());
    return true;
  }

  /** Detaches, unpins and closes the link `name`. */
  remove(name: string): void {
    if (this.#filters.has(name)) {
      removeFilter(this.#pinDir, name);
      this.#filters.delete(name);
      return;
    }
    const link = this.#links.get(name);
    if (!link) return;
    detachQuietly(link);
    link.unpin();
    link.close();
    this.#links.delete(name);
  }

  /**
   * Pins again each held link among `wanted` whose pin was removed from outside while it is still attached
   * (a link another command detached is left alone); returns the names pinned again.
   */
  repinMissing(wanted: (name: string) => boolean): string[] {
    const repinned: string[] = [];
    for (const [name, link] of this.#links) {
      const path = `${this.#pinDir}/links/${name}`;
      if (!wanted(name) || exists(path)) continue;
      const info = link.info();
      if (info.programId === 0 || info.attached === false) continue;
      link.repin(path);
      repinned.push(name);
    }
    // A filter's record: the filter attached again with this process's program (one step), recorded anew.
    for (const name of this.#filters) {
      if (!wanted(name) || exists(filterRecordPath(this.#pinDir, name))) continue;
      const status = filterStatus(this.#pinDir, name);
      if (status.ifindex === undefined || status.running === undefined) continue;
      attachFilter(this.#programs.runnable(PROGRAMS.forward), this.#pinDir, name, status.ifindex);
      repinned.push(name);
    }
    return repinned;
  }

  /** Releases this process's references; pinned links stay attached. */
  close(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    this.#filters.clear();
  }

  /** Adopts the link pinned under `name`, or makes it with `attach` and pins it. */
  #attach(name: string, attach: () => BpfLink): void {
    const path = `${this.#pinDir}/links/${name}`;
    if (exists(path)) {
      this.#links.set(name, BpfLink.open(path));
      return;
    }
    const link = attach();
    try {
      if (!exists(path)) link.pin(path);
    } catch (error) {
      link.close();
      throw error;
    }
    this.#links.set(name, link);
  }

  /**
   * XDP in the mode xdpAttachMode() gives the interface's driver (lib/kernel/xdp_mode.ts); where native
   * attach is refused, generic mode, so an interface is never left unfiltered for want of driver support.
   */
  #attachXdp(name: string, ifindex: number, ifname: string): BpfLink {
    const program = this.#programs.attachable(PROGRAMS.ingress);
    const driver = this.#xdpMode === "auto" ? interfaceDriver(ifname) : undefined;
    if (xdpAttachMode(this.#xdpMode, driver) === "native") {
      try {
        return program.attachXdp(ifindex, ifname);
      } catch (error) {
        if (!isUnsupported(error)) throw error;
      }
    }
    return program.attachXdpGeneric(ifindex, `${this.#pinDir}/links/${name}`);
  }
}

/** Detaches a link where its type can be detached; tracing and LSM links end when unpinned and closed. */
export function detachQuietly(link: BpfLink): void {
  try {
    link.detach();
  } catch (error) {
    if (!isUnsupported(error)) throw error;
  }
}

function isUnsupported(error: unknown): boolean {
  return error instanceof BpfError && ["EOPNOTSUPP", "EINVAL", "ENOTSUPP"].includes(error.errnoName);
}
