import { BpfError, BpfLink, type BpfObject, closeFd, openDirectory } from "../../ffi/mod.ts";
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
  LSM_PROGRAMS,
} from "./load.ts";
import { ensureMounted } from "./mounts.ts";
import { type ProgramName, PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";

/** The pinned link name of the XDP program on interface `ifname`. */
export function ingressLinkName(ifname: string): string {
  return `${PROGRAMS.ingress}@${ifname}`;
}

/**
 * The links of one plane, by pinned name (program name, or `aegis_xdp@IFACE`): each is adopted from its
 * pin under `<pinDir>/links` when an earlier process left one, or attached and pinned there.
 */
export class PlaneLinks {
  readonly #object: BpfObject;
  readonly #pinDir: string;
  readonly #xdpMode: "native" | "generic";
  readonly #links = new Map<string, BpfLink>();

  constructor(object: BpfObject, pinDir: string, xdpMode: "native" | "generic") {
    this.#object = object;
    this.#pinDir = pinDir;
    this.#xdpMode = xdpMode;
  }

  get names(): string[] {
    return [...this.#links.keys()].sort();
  }

  has(name: string): boolean {
    return this.#links.has(name);
  }

  /** Attaches (or adopts) the programs of `areas` as `status` says they are served. */
  attachAreas(
    areas: ReadonlySet<Area>,
    status: Readonly<Record<Area, AreaStatus>>,
    cgroupPath: string,
  ): void {
    const programs: ProgramName[] = [];
    if (areas.has("file")) {
      programs.push(...(status.file.mode === "enforce" ? FILE_LSM_PROGRAMS : FILE_AUDIT_PROGRAMS));
    }
    if (areas.has("exec")) {
      programs.push(...(status.exec.mode === "enforce" ? EXEC_LSM_PROGRAMS : [PROGRAMS.execAudit]));
    }
    if (programs.some((program) => LSM_PROGRAMS.includes(program))) programs.push(...GUARD_LSM_PROGRAMS);
    if (areas.has("egress")) {
      // The LSM hooks where they were loaded (BPF-LSM works here), else the reporting tracepoint.
      const lsm = this.#object.program(EGRESS_LSM_PROGRAMS.lsm[0]).fd >= 0;
      programs.push(...(lsm ? EGRESS_LSM_PROGRAMS.lsm : EGRESS_LSM_PROGRAMS.fallback));
    }
    if (areas.has("bind") && this.#object.program(BIND_LSM_PROGRAMS[0]!).fd >= 0) {
      programs.push(...BIND_LSM_PROGRAMS);
    }
    const lsmOnly: readonly ProgramName[] = [
      ...LSM_PROGRAMS,
      ...EGRESS_LSM_PROGRAMS.lsm,
      ...BIND_LSM_PROGRAMS,
    ];
    if (programs.some((program) => !lsmOnly.includes(program))) ensureMounted("tracefs");
    for (const program of programs) {
      this.#attach(program, program, () => this.#object.program(program).attach());
    }
    // Ingress links and the scope guard pinned by an earlier process stay theirs to keep: adopt them too.
    for (const name of listDir(`${this.#pinDir}/links`)) {
      const adopt = name.startsWith(ingressLinkName("")) || name === PROGRAMS.scopeGuard;
      if (adopt && !this.#links.has(name)) {
        this.#links.set(name, BpfLink.open(`${this.#pinDir}/links/${name}`));
      }
    }
    const cgroupPrograms = [
      ...(areas.has("egress") ? CGROUP_PROGRAMS.egress : []),
      ...(areas.has("bind") ? CGROUP_PROGRAMS.bind : []),
    ];
    if (cgroupPrograms.length === 0) return;
    const fd = openDirectory(cgroupPath);
    try {
      for (const program of cgroupPrograms) {
        this.#attach(program, program, () => this.#object.program(program).attachCgroup(fd, cgroupPath));
      }
    } finally {
      closeFd(fd);
    }
  }

  /** Attaches the XDP program to an interface (adopting its pinned link if there is one). */
  attachInterface(ifindex: number, ifname: string): string {
    const name = ingressLinkName(ifname);
    this.#attach(name, PROGRAMS.ingress, () => this.#attachXdp(name, ifindex, ifname));
    return name;
  }

  /**
   * Attaches (or adopts) the scope guard where this object loaded it (BPF-LSM is available and file or exec
   * rules are served); false when it is not loaded here.
   */
  attachScopeGuard(): boolean {
    const name = PROGRAMS.scopeGuard;
    if (this.#links.has(name)) return true;
    if (this.#object.program(name).fd < 0) return false;
    this.#attach(name, name, () => this.#object.program(name).attach());
    return true;
  }

  /** Detaches, unpins and closes the link `name`. */
  remove(name: string): void {
    const link = this.#links.get(name);
    if (!link) return;
    detachQuietly(link);
    link.unpin();
    link.close();
    this.#links.delete(name);
  }

  /** Releases this process's references; pinned links stay attached. */
  close(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
  }

  /** Adopts the link pinned under `name`, or makes it with `attach` and pins it. */
  #attach(name: string, program: ProgramName, attach: () => BpfLink): void {
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
    // The program a new link runs, pinned for inspection (bpftool prog show pinned ...).
    const programPin = `${this.#pinDir}/progs/${program}`;
    if (!exists(programPin)) this.#object.program(program).pin(programPin);
  }

  /**
   * XDP in the driver's native mode where it has one; where native attach is refused, generic mode, so
   * an interface is never left unfiltered for want of driver support.
   */
  #attachXdp(name: string, ifindex: number, ifname: string): BpfLink {
    const program = this.#object.program(PROGRAMS.ingress);
    if (this.#xdpMode === "native") {
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
