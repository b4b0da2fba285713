import {
  type AegisConfig,
  BpfError,
  BpfLink,
  type BpfMap,
  type BpfObject,
  CAPACITY,
  closeFd,
  CONFIG_WORDS,
  COUNTER,
  decodeGenInfo,
  decodeSession,
  decodeU64,
  encodeSession,
  encodeSessionKey,
  encodeU32,
  encodeU64,
  FdMap,
  type GenInfo,
  HOOK_NAMES,
  ifIndex,
  LAYOUT,
  lockDirectory,
  openDirectory,
  type RawEvent,
  sumPerCpu,
  tryLockDirectory,
} from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import { cgroup2Root } from "./cgroup.ts";
import { type ResolvedRuleSet, RULE_MAPS, type RuleMapName } from "./entries.ts";
import { EventStream } from "./events.ts";
import { stageGeneration } from "./generations.ts";
import { ensureMounted } from "./mounts.ts";
import { openAegisObject, type ProgramName, PROGRAMS } from "./object.ts";

/** How an area is served on this kernel. */
export type AreaStatus = { mode: "enforce" | "audit-only" | "unavailable"; reason?: string };

export type DataPlaneOptions = {
  /** A bpffs mount; everything is pinned under `<bpffs>/aegisbpf/`. */
  bpffs: string;
  /** Cgroup the socket programs attach to: the cgroup v2 root by default. */
  cgroupPath?: string;
  /** Areas to attach (ingress attaches per interface when a rule set names one). Default: all. */
  areas?: readonly Area[];
  /** "auto" tries BPF-LSM and falls back to audit-only tracepoints; "off" goes straight to the fallback. */
  lsm?: "auto" | "off";
  /** Size of the events ring buffer in bytes (a power of two, at least a page); used when it is created. */
  ringBufferBytes?: number;
  /** XDP attach mode: "native" tries the driver first and falls back to generic; "generic" skips it. */
  xdpMode?: "native" | "generic";
  /** Lower entry limits than the maps' own (CAPACITY), e.g. to keep a host's kernel memory in bounds. */
  capacity?: Partial<Record<RuleMapName, number>>;
};

const LSM_PROGRAMS: readonly ProgramName[] = [PROGRAMS.fileOpen, PROGRAMS.exec];
const FILE_AUDIT_PROGRAMS: readonly ProgramName[] = [
  PROGRAMS.fileOpenAudit,
  PROGRAMS.fileOpenLegacyAudit,
  PROGRAMS.fileOpenat2Audit,
];
const CGROUP_PROGRAMS: Readonly<Record<"egress" | "bind", readonly ProgramName[]>> = {
  egress: [PROGRAMS.connect4, PROGRAMS.connect6, PROGRAMS.sendmsg4, PROGRAMS.sendmsg6],
  bind: [PROGRAMS.bind4, PROGRAMS.bind6],
};
const ALL_AREAS: readonly Area[] = ["file", "exec", "egress", "bind", "ingress"];
export type Hook = typeof HOOK_NAMES[number];

export type Counters = {
  decisions: Record<Hook, { deny: bigint; audit: bigint }>;
  eventsLost: bigint;
  eventsSuppressed: bigint;
};

/**
 * The kernel side of aegisbpf: the loaded (or adopted) object, its pins and links. Closing it leaves
 * enforcement in place; only `DataPlane.detach` removes it.
 */
export class DataPlane {
  readonly pinDir: string;
  readonly status: Readonly<Record<Area, AreaStatus>>;
  readonly #object: BpfObject;
  readonly #links = new Map<string, BpfLink>();
  readonly #xdpMode: "native" | "generic";
  readonly #capacity: Partial<Record<RuleMapName, number>>;

  private constructor(
    object: BpfObject,
    pinDir: string,
    status: Record<Area, AreaStatus>,
    options: DataPlaneOptions,
  ) {
    this.#object = object;
    this.pinDir = pinDir;
    this.status = status;
    this.#xdpMode = options.xdpMode ?? "native";
    this.#capacity = options.capacity ?? {};
  }

  /**
   * Loads the programs and attaches them, or adopts what an earlier process pinned: pinned maps are
   * reused and pinned links kept, so enforcement never lapses between two agents.
   */
  static open(options: DataPlaneOptions): DataPlane {
    const pinDir = `${options.bpffs}/aegisbpf`;
    Deno.mkdirSync(`${pinDir}/maps`, { recursive: true });
    Deno.mkdirSync(`${pinDir}/links`, { recursive: true });
    Deno.mkdirSync(`${pinDir}/progs`, { recursive: true });
    const areas = new Set(options.areas ?? ALL_AREAS);
    const { object, status } = loadWithFallback(
      pinDir,
      areas,
      options.lsm ?? "auto",
      options.ringBufferBytes,
    );
    const plane = new DataPlane(object, pinDir, status, options);
    try {
      // The layout of the pins this process made or adopted, for the next release to read.
      plane.#configMap().update(encodeU32(CONFIG_WORDS.layout), encodeU64(BigInt(LAYOUT.VERSION)));
      plane.#attachAreas(areas, options.cgroupPath ?? cgroup2Root());
    } catch (error) {
      plane.close();
      throw error;
    }
    return plane;
  }

  /** Pinned link names currently held (program name, or `aegis_xdp@IFACE`). */
  get links(): string[] {
    return [...this.#links.keys()].sort();
  }

  map(name: string): BpfMap {
    return this.#object.map(name);
  }

  config(): AegisConfig {
    const word = (index: number) => {
      const value = this.#configMap().lookup(encodeU32(index));
      return value ? decodeU64(value) : 0n;
    };
    return {
      activeGen: Number(word(CONFIG_WORDS.activeGen)),
      forceAudit: word(CONFIG_WORDS.forceAudit) !== 0n,
      breakGlass: word(CONFIG_WORDS.breakGlass) !== 0n,
      deadmanDeadlineNs: word(CONFIG_WORDS.deadmanDeadlineNs),
    };
  }

  /**
   * Changes mode words (forced audit, break-glass, deadman): one map write per word, effective at once.
   * Each word is written alone, so a concurrent flip or another word's writer is never overwritten.
   */
  setConfig(change: Partial<Omit<AegisConfig, "activeGen">>): AegisConfig {
    const map = this.#configMap();
    if (change.forceAudit !== undefined) {
      map.update(encodeU32(CONFIG_WORDS.forceAudit), encodeU64(change.forceAudit ? 1n : 0n));
    }
    if (change.breakGlass !== undefined) {
      map.update(encodeU32(CONFIG_WORDS.breakGlass), encodeU64(change.breakGlass ? 1n : 0n));
    }
    if (change.deadmanDeadlineNs !== undefined) {
      map.update(encodeU32(CONFIG_WORDS.deadmanDeadlineNs), encodeU64(change.deadmanDeadlineNs));
    }
    return this.config();
  }

  /** The rule-set facts of the active generation. */
  activeGenInfo(): GenInfo {
    const value = this.map("gen_info").lookup(encodeU32(this.config().activeGen));
    if (!value) throw new Error("gen_info has no entry for the active generation");
    return decodeGenInfo(value);
  }

  /**
   * Applies a rule set: writes it into fresh inner maps installed in the inactive generation's slots,
   * flips the active-generation word in one map update, waits for hooks still running on the old word,
   * then drops the old generation's maps. If anything fails before the flip, the live rules are untouched
   * and the error is rethrown; a failure after it is an AppliedWithCleanupError. Returns the new active
   * generation.
   */
  async apply(set: ResolvedRuleSet): Promise<number> {
    // One apply at a time, across processes. Taken without awaiting when free, so that attaching
    // happens in the caller's turn (and network namespace).
    using _lock = tryLockDirectory(this.pinDir) ?? await lockDirectory(this.pinDir);
    const next = this.config().activeGen ^ 1;
    using staged = stageGeneration(this.#object, set, next, this.#capacity);
    const newLinks: string[] = [];
    try {
      for (const iface of set.interfaces) {
        const name = `${PROGRAMS.ingress}@${iface.name}`;
        if (!this.#links.has(name)) {
          this.#attach(name, PROGRAMS.ingress, () => this.#attachXdp(name, iface.ifindex, iface.name));
          newLinks.push(name);
        }
      }
    } catch (error) {
      staged.abandon();
      for (const name of newLinks) this.#removeLink(name);
      throw error;
    }
    staged.commit();
    const wanted = new Set(set.interfaces.map((iface) => `${PROGRAMS.ingress}@${iface.name}`));
    for (const name of this.links) {
      if (name.startsWith(`${PROGRAMS.ingress}@`) && !wanted.has(name)) this.#removeLink(name);
    }
    return next;
  }

  /** Which generations have inner maps installed (the live one always, the other only mid-apply). */
  slots(): Record<number, boolean> {
    const installed = (gen: number) => this.map("rules").lookup(encodeU32(gen)) !== undefined;
    return { 0: installed(0), 1: installed(1) };
  }

  /** Decision and event counters, summed over CPUs. */
  counters(): Counters {
    const map = this.map("counters");
    const slot = (index: number): bigint => sumPerCpu(map.lookup(encodeU32(index)));
    const decisions = Object.fromEntries(
      HOOK_NAMES.map((hook, i) => [hook, { deny: slot(i * 2), audit: slot(i * 2 + 1) }]),
    ) as Counters["decisions"];
    return {
      decisions,
      eventsLost: slot(COUNTER.EVENTS_LOST),
      eventsSuppressed: slot(COUNTER.EVENTS_SUPPRESSED),
    };
  }

  /**
   * Entries of the live generation's rule maps (counted at apply, read from gen_info: no key walk) and
   * their capacity, and of the session trie.
   */
  mapFill(): { map: string; entries: number; capacity: number }[] {
    const info = this.activeGenInfo();
    const sessions = this.map("ingress_session");
    return [
      { map: "rules", entries: info.rulesEntries, capacity: CAPACITY.RULES },
      { map: "net_rules", entries: info.netRulesEntries, capacity: CAPACITY.NET_RULES },
      { map: "ingress_session", entries: sessions.keys().length, capacity: sessions.maxEntries },
    ];
  }

  /**
   * Reports what the rate limiter suppressed in windows that have ended (as summary events) and removes
   * idle limiter entries: run it on a timer, so that the last window of a flood is never left unreported.
   */
  flushRateLimits(): void {
    // The smallest packet an XDP test run takes: an Ethernet header.
    this.#object.program(PROGRAMS.flushRates).testRun(new Uint8Array(14));
  }

  /** A stream of decoded events from the (pinned) ring buffer. */
  events(onEvent: (event: RawEvent) => void): EventStream {
    return new EventStream(this.map("events"), onEvent);
  }

  /** Adds a temporary ingress allow entry; returns its id. The reaper removes it after `ttlMs`. */
  addSession(session: {
    interface: string;
    family: 4 | 6;
    addr: Uint8Array;
    prefixLength: number;
    port?: number;
    ttlMs: number;
    nowBootNs: bigint;
  }): number {
    const map = this.map("ingress_session");
    const ids = map.keys().map((key) => decodeSession(map.lookup(key) ?? new Uint8Array(16)).sessionId);
    const sessionId = Math.max(0, ...ids) + 1;
    const key = encodeSessionKey({
      ifindex: ifIndex(session.interface),
      family: session.family,
      addr: session.addr,
      prefixLength: session.prefixLength,
      port: session.port ?? 0,
    });
    const expiresBootNs = session.nowBootNs + BigInt(Math.round(session.ttlMs * 1e6));
    map.update(key, encodeSession({ expiresBootNs, sessionId }));
    return sessionId;
  }

  /** Removes a session by id; false when there was none. */
  removeSession(sessionId: number): boolean {
    return this.#deleteSessions((session) => session.sessionId === sessionId) > 0;
  }

  /** Removes sessions whose expiry has passed; returns how many. */
  reapSessions(nowBootNs: bigint): number {
    return this.#deleteSessions((session) => session.expiresBootNs <= nowBootNs);
  }

  /** Releases this process's handles. Pinned programs keep enforcing. */
  close(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    this.#object.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Removes every aegisbpf link, program and map pinned under `<bpffs>/aegisbpf/`: the clean uninstall.
   * Links are detached first (cgroup and XDP links at once, even if another process holds them).
   * Returns the names removed.
   */
  static detach(bpffs: string): string[] {
    const pinDir = `${bpffs}/aegisbpf`;
    if (!exists(pinDir)) return [];
    using _lock = tryLockDirectory(pinDir) ??
      refuse(`another aegisbpf process is applying a policy under ${pinDir}`);
    // LSM and tracepoint links cannot be detached while another process holds them: empty the rules and
    // force audit first, so that whatever stays attached until that process exits decides nothing.
    neutralize(`${pinDir}/maps`);
    const removed: string[] = [];
    for (const name of listDir(`${pinDir}/links`)) {
      const path = `${pinDir}/links/${name}`;
      const link = BpfLink.open(path);
      try {
        detachQuietly(link);
        link.unpin();
      } finally {
        link.close();
      }
      removed.push(`links/${name}`);
    }
    for (const kind of ["progs", "maps"]) {
      for (const name of listDir(`${pinDir}/${kind}`)) {
        Deno.removeSync(`${pinDir}/${kind}/${name}`);
        removed.push(`${kind}/${name}`);
      }
    }
    for (const dir of [`${pinDir}/links`, `${pinDir}/progs`, `${pinDir}/maps`, pinDir]) {
      try {
        Deno.removeSync(dir);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    return removed;
  }

  #configMap(): BpfMap {
    return this.map("aegis_cfg");
  }

  #attachAreas(areas: Set<Area>, cgroupPath: string): void {
    const programs: ProgramName[] = [];
    if (areas.has("file")) {
      programs.push(...(this.status.file.mode === "enforce" ? [PROGRAMS.fileOpen] : FILE_AUDIT_PROGRAMS));
    }
    if (areas.has("exec")) {
      programs.push(this.status.exec.mode === "enforce" ? PROGRAMS.exec : PROGRAMS.execAudit);
    }
    if (programs.some((program) => !LSM_PROGRAMS.includes(program))) ensureMounted("tracefs");
    for (const program of programs) {
      this.#attach(program, program, () => this.#object.program(program).attach());
    }
    // Ingress links pinned by an earlier process stay theirs to keep: adopt them too.
    for (const name of listDir(`${this.pinDir}/links`)) {
      if (name.startsWith(`${PROGRAMS.ingress}@`) && !this.#links.has(name)) {
        this.#links.set(name, BpfLink.open(`${this.pinDir}/links/${name}`));
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

  /** Adopts the link pinned under `name`, or makes it with `attach` and pins it. */
  #attach(name: string, program: ProgramName, attach: () => BpfLink): void {
    const path = `${this.pinDir}/links/${name}`;
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
    const programPin = `${this.pinDir}/progs/${program}`;
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
        if (!(error instanceof BpfError && ["EOPNOTSUPP", "EINVAL", "ENOTSUPP"].includes(error.errnoName))) {
          throw error;
        }
      }
    }
    return program.attachXdpGeneric(ifindex, `${this.pinDir}/links/${name}`);
  }

  #removeLink(name: string): void {
    const link = this.#links.get(name);
    if (!link) return;
    detachQuietly(link);
    link.unpin();
    link.close();
    this.#links.delete(name);
  }

  #deleteSessions(match: (session: { expiresBootNs: bigint; sessionId: number }) => boolean): number {
    const map = this.map("ingress_session");
    let removed = 0;
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (value && match(decodeSession(value)) && map.delete(key)) removed++;
    }
    return removed;
  }
}

/** The rule maps of pin layout 1 (before per-generation inner maps), for detach on old pins. */
const LAYOUT_1_RULE_MAPS = [
  "deny_file",
  "deny_exec",
  "egress_port",
  "egress_any",
  "ingress_port",
  "ingress_any",
  "scope",
  "egress_uid",
  "egress_uid_port",
  "bind_deny",
  "ingress_failsafe",
  "ingress_iface",
];

function refuse(message: string): never {
  throw new Error(`Cannot detach: ${message}; try again when it has finished`);
}

/**
 * Empties every pinned rule map and forces audit, through the pins alone, so that it works on the maps of
 * any release (an older object's layout cannot be loaded by this one).
 */
function neutralize(mapDir: string): void {
  const pinned = new Set(listDir(mapDir));
  if (pinned.has("aegis_cfg")) {
    using config = FdMap.open(`${mapDir}/aegis_cfg`);
    if (config.valueSize === 8 && config.maxEntries > CONFIG_WORDS.forceAudit) {
      config.update(encodeU32(CONFIG_WORDS.forceAudit), encodeU64(1n));
    }
  }
  // Layout 2 keeps rules in maps of maps: emptying a slot drops a whole generation. Older layouts kept
  // them in plain maps: every key is deleted.
  for (const name of [...Object.keys(RULE_MAPS), ...LAYOUT_1_RULE_MAPS]) {
    if (!pinned.has(name)) continue;
    using map = FdMap.open(`${mapDir}/${name}`);
    for (const key of map.keys()) map.delete(key);
  }
}

/** Loads every wanted program; where BPF-LSM programs cannot load, loads the audit tracepoints instead. */
function loadWithFallback(
  pinDir: string,
  areas: Set<Area>,
  lsm: "auto" | "off",
  ringBufferBytes: number | undefined,
): { object: BpfObject; status: Record<Area, AreaStatus> } {
  const open = (programs: ProgramName[]) => {
    const object = openAegisObject(programs, `${pinDir}/maps`);
    if (ringBufferBytes !== undefined) object.setMaxEntries("events", ringBufferBytes);
    return object.load();
  };
  const status: Record<Area, AreaStatus> = {
    file: { mode: "enforce" },
    exec: { mode: "enforce" },
    egress: { mode: "enforce" },
    bind: { mode: "enforce" },
    ingress: { mode: "enforce" },
  };
  const common: ProgramName[] = [
    ...CGROUP_PROGRAMS.egress,
    ...CGROUP_PROGRAMS.bind,
    PROGRAMS.ingress,
    PROGRAMS.flushRates,
  ];
  const fallback = [...FILE_AUDIT_PROGRAMS, PROGRAMS.execAudit];
  const wantsLsm = areas.has("file") || areas.has("exec");
  let reason = lsm === "off" ? "BPF-LSM disabled by configuration" : lsmInactiveReason();
  if (wantsLsm && reason === undefined) {
    try {
      return { object: open([...common, ...LSM_PROGRAMS]), status };
    } catch (error) {
      const lsmFailed = error instanceof BpfError &&
        LSM_PROGRAMS.some((program) => program === error.subject);
      if (!lsmFailed) throw error;
      reason = `BPF-LSM program load failed: ${error.errnoName}`;
    }
  }
  if (wantsLsm) {
    status.file = { mode: "audit-only", reason: reason ?? "" };
    status.exec = { mode: "audit-only", reason: reason ?? "" };
  }
  return { object: open([...common, ...fallback]), status };
}

/** Why BPF-LSM is not usable, or undefined when `bpf` is among the active LSMs. */
function lsmInactiveReason(): string | undefined {
  try {
    const active = Deno.readTextFileSync("/sys/kernel/security/lsm").trim().split(",");
    return active.includes("bpf") ? undefined : `BPF LSM not active (lsm=${active.join(",")})`;
  } catch {
    return "securityfs not mounted: cannot read /sys/kernel/security/lsm";
  }
}

function detachQuietly(link: BpfLink): void {
  try {
    link.detach();
  } catch (error) {
    // Tracing and LSM links have no detach operation: unpinning and closing ends them.
    if (!(error instanceof BpfError && ["EOPNOTSUPP", "EINVAL", "ENOTSUPP"].includes(error.errnoName))) {
      throw error;
    }
  }
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
