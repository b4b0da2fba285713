import {
  type AegisConfig,
  bootTimeNs,
  type BpfMap,
  type BpfObject,
  CONFIG_WORDS,
  COUNTER,
  decodeGenInfo,
  decodeU64,
  encodeU32,
  encodeU64,
  type GenInfo,
  LAYOUT,
  lockDirectory,
  lockDirectorySync,
  type MapFill,
  type RawEvent,
  ruleMapFill,
  sumPerCpu,
  tryLockDirectory,
} from "../../ffi/mod.ts";
import type { Area, HostRule } from "../policy/plan.ts";
import {
  type Answer,
  DEFAULT_TTL_FLOOR,
  type DnsStats,
  dnsStats,
  learn,
  learnedEntries,
  type LearnedEntry,
} from "./learned.ts";
import { cgroup2Root } from "./cgroup.ts";
import { detachPins } from "./detach.ts";
import type { ResolvedRuleSet, RuleMapName } from "./entries.ts";
import { EventStream } from "./events.ts";
import { type Counters, countersFrom } from "./inspect.ts";
import {
  AppliedWithCleanupError,
  type NetRulesAhead,
  stageGeneration,
  stageGenerationAtOnce,
} from "./generations.ts";
import { type ForwardAttach, forwardLinkName, ingressLinkName, PlaneLinks } from "./links.ts";
import { type AreaStatus, loadPlane } from "./load.ts";
import { decodeBreakGlass, whilePinsQuiet } from "./mode_words.ts";
import { PROGRAMS } from "./object.ts";
import { makePinDirs } from "./pin_dir.ts";
import type { PlanePrograms } from "./programs.ts";
import { addSession, deleteSessions, type Session } from "./sessions.ts";
import type { XdpMode } from "./xdp_mode.ts";

export type { AreaStatus } from "./load.ts";
export { DetachError } from "./detach.ts";

export type DataPlaneOptions = {
  /** A bpffs mount; everything is pinned under `<bpffs>/aegisbpf/`. */
  bpffs: string;
  /** Cgroup the socket programs attach to: the cgroup v2 root by default. */
  cgroupPath?: string;
  /** Areas to attach (ingress attaches per interface when a rule set names one). Default: all. */
  areas?: readonly Area[];
  /** "auto" probes BPF-LSM and falls back to audit-only tracepoints; "off" goes straight to the fallback. */
  lsm?: "auto" | "off";
  /** Size of the events ring buffer in bytes (a power of two, at least a page); used when it is created. */
  ringBufferBytes?: number;
  /**
   * XDP attach mode: "auto" (the default) by the interface's driver (lib/kernel/xdp_mode.ts); "native" tries
   * the driver first and falls back to generic; "generic" skips it.
   */
  xdpMode?: XdpMode;
  /** Lower entry limits than the maps' own (CAPACITY), e.g. to keep a host's kernel memory in bounds. */
  capacity?: Partial<Record<RuleMapName, number>>;
  /** The BPF object to load instead of the built one (tests: another release's object). */
  image?: Uint8Array<ArrayBuffer>;
  /**
   * How network.egress.forwarded attaches: "auto" (a tcx link, or a classic tc filter where the kernel has
   * no tcx), or "legacy" (a tc filter even where tcx works: tests only, not reachable from the CLI).
   */
  forwardAttach?: ForwardAttach;
};

const ALL_AREAS: readonly Area[] = ["file", "exec", "egress", "bind", "ingress"];
export type { Counters, Hook } from "./inspect.ts";

/**
 * The kernel side of aegisbpf: the loaded (or adopted) object, its pins and links. Closing it leaves
 * enforcement in place; only `DataPlane.detach` removes it.
 */
export class DataPlane {
  readonly pinDir: string;
  readonly status: Readonly<Record<Area, AreaStatus>>;
  readonly #object: BpfObject;
  readonly #programs: PlanePrograms;
  readonly #links: PlaneLinks;
  readonly #capacity: Partial<Record<RuleMapName, number>>;
  readonly #bpffs: string;

  private constructor(
    object: BpfObject,
    programs: PlanePrograms,
    pinDir: string,
    status: Record<Area, AreaStatus>,
    options: DataPlaneOptions,
  ) {
    this.#object = object;
    this.#programs = programs;
    this.pinDir = pinDir;
    this.status = status;
    this.#links = new PlaneLinks(programs, pinDir, options.xdpMode ?? "auto", options.forwardAttach);
    this.#capacity = options.capacity ?? {};
    this.#bpffs = options.bpffs;
  }

  /**
   * Loads the programs and attaches them, or adopts what an earlier process pinned: pinned maps are
   * reused and pinned links kept, so enforcement never lapses between two agents. Where the pinned programs
   * were loaded from this very object, none is loaded again (see lib/kernel/programs.ts). Holds the pin
   * directory's lock throughout (waiting for another process's open or apply to finish), so that it never
   * adopts pins half made.
   */
  static open(options: DataPlaneOptions): DataPlane {
    const pinDir = `${options.bpffs}/aegisbpf`;
    makePinDirs(pinDir);
    using _lock = tryLockDirectory(pinDir) ?? lockDirectorySync(pinDir);
    // A detach may have removed the directories while this process waited for the lock.
    makePinDirs(pinDir);
    const areas = new Set(options.areas ?? ALL_AREAS);
    const { object, programs, status } = loadPlane(pinDir, {
      areas,
      lsm: options.lsm ?? "auto",
      ringBufferBytes: options.ringBufferBytes,
      image: options.image,
    });
    const plane = new DataPlane(object, programs, pinDir, status, options);
    try {
      // The layout of the pins this process made or adopted, for the next release to read.
      plane.#configMap().update(encodeU32(CONFIG_WORDS.layout), encodeU64(BigInt(LAYOUT.VERSION)));
      // Only the socket areas need cgroup v2: an ingress-only plane works on a host without it.
      const needsCgroup = areas.has("egress") || areas.has("bind");
      plane.#links.attachAreas(areas, status, options.cgroupPath ?? (needsCgroup ? cgroup2Root() : ""));
    } catch (error) {
      plane.close();
      throw error;
    }
    return plane;
  }

  /** Whether this process adopted the pinned programs as they were (it loaded none to open the plane). */
  get adopted(): boolean {
    return this.#programs.adopted;
  }

  /** Pinned link names currently held (program name, or `aegis_xdp@IFACE`). */
  get links(): string[] {
    return this.#links.names;
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
      // The word is on (1) or a boot-clock deadline: one that has passed is off, as the hooks read it.
      breakGlass: decodeBreakGlass(word(CONFIG_WORDS.breakGlass), bootTimeNs()).on,
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
   * then drops the old generation's maps (every slot at once). If anything fails before the flip, the live rules are untouched
   * and the error is rethrown; a failure after it is an AppliedWithCleanupError. Returns the new active
   * generation. `ahead`: the set's `net_rules` map written ahead (NetRulesAhead), installed when its write
   * is done: the caller waits for it (`written()`) before this call, whose turn the attaching must stay in.
   */
  async apply(set: ResolvedRuleSet, ahead?: NetRulesAhead): Promise<number> {
    // One apply at a time, across processes. Taken without awaiting when free, so that attaching
    // happens in the caller's turn (and network namespace).
    using _lock = tryLockDirectory(this.pinDir) ?? await lockDirectory(this.pinDir);
    const next = this.config().activeGen ^ 1;
    // With no interface link to attach or remove, nothing here depends on the caller's network namespace:
    // the new inner maps are then installed at once (each install waits for a grace period; together, they
    // end together), which ends the caller's turn.
    using staged = this.#interfaceLinks(set)
      ? stageGeneration(this.#object, set, next, this.#capacity, ahead)
      : await stageGenerationAtOnce(this.#object, set, next, this.#capacity, ahead);
    const newLinks: string[] = [];
    try {
      // In place before the flip, so that no moment of the new scope is unguarded.
      if (set.plan.scopeGuard && !this.#links.has(PROGRAMS.scopeGuard) && this.#links.attachScopeGuard()) {
        newLinks.push(PROGRAMS.scopeGuard);
      }
      for (const iface of set.interfaces) {
        if (!this.#links.has(ingressLinkName(iface.name))) {
          newLinks.push(this.#links.attachInterface(iface.ifindex, iface.name));
        }
      }
      for (const iface of set.forward ?? []) {
        if (!this.#links.hasForward(iface.ifindex, iface.name)) {
          newLinks.push(this.#links.attachForward(iface.ifindex, iface.name));
        }
      }
    } catch (error) {
      staged.abandon();
      for (const name of newLinks) this.#links.remove(name);
      throw error;
    }
    staged.flip();
    // The old generation's maps are dropped on worker threads while the links are tidied here, in the
    // caller's turn (and network namespace: a tc filter is removed through netlink).
    const dropped = staged.dropOld();
    try {
      const wanted = new Set(set.interfaces.map((iface) => ingressLinkName(iface.name)));
      for (const name of this.links) {
        if (name.startsWith(ingressLinkName("")) && !wanted.has(name)) this.#links.remove(name);
      }
      const forwarding = new Set((set.forward ?? []).map((iface) => forwardLinkName(iface.name)));
      for (const name of this.links) {
        if (name.startsWith(forwardLinkName("")) && !forwarding.has(name)) this.#links.remove(name);
      }
      // The guard runs on every path walk: a policy without a scope does not pay for it.
      if (!set.plan.scopeGuard) this.#links.remove(PROGRAMS.scopeGuard);
    } catch (error) {
      await dropped.catch(() => {});
      throw new AppliedWithCleanupError(next, error);
    }
    await dropped;
    return next;
  }

  /** Whether applying `set` attaches or removes an interface's link (XDP, tc): work done through netlink. */
  #interfaceLinks(set: ResolvedRuleSet): boolean {
    return set.interfaces.length > 0 || (set.forward?.length ?? 0) > 0 ||
      this.links.some((name) => name.startsWith(ingressLinkName("")) || name.startsWith(forwardLinkName("")));
  }

  /** Which generations have inner maps installed (the live one always, the other only mid-apply). */
  slots(): Record<number, boolean> {
    const installed = (gen: number) => this.map("rules").lookup(encodeU32(gen)) !== undefined;
    return { 0: installed(0), 1: installed(1) };
  }

  /** Decision and event counters, summed over CPUs. */
  counters(): Counters {
    const map = this.map("counters");
    return countersFrom((index) => sumPerCpu(map.lookup(encodeU32(index))));
  }

  /** Events the kernel could not queue (the ring was full), summed over CPUs: one slot of `counters()`. */
  eventsLost(): bigint {
    return sumPerCpu(this.map("counters").lookup(encodeU32(COUNTER.EVENTS_LOST)));
  }

  /**
   * Entries of the live generation's rule maps (counted at apply, read from gen_info: no key walk) and
   * their capacity, and of the session trie.
   */
  mapFill(): MapFill[] {
    const sessions = this.map("ingress_session");
    const learned = this.map("learned");
    return [
      ...ruleMapFill(this.activeGenInfo()),
      { map: "ingress_session", entries: sessions.keys().length, capacity: sessions.maxEntries },
      { map: "learned", entries: learned.keys().length, capacity: learned.maxEntries },
    ];
  }

  /**
   * Reports what the rate limiter suppressed in windows that have ended (as summary events) and removes
   * idle limiter entries: run it on a timer, so that the last window of a flood is never left unreported.
   * Returns whether the limiter still holds entries: a window not ended yet, or one idle for less than a
   * window, which a later flush reports or removes.
   */
  flushRateLimits(): boolean {
    // The smallest packet an XDP test run takes: an Ethernet header.
    this.#programs.runnable(PROGRAMS.flushRates).testRun(new Uint8Array(14));
    return !this.map("event_rate").isEmpty();
  }

  /**
   * Writes the addresses `answers` give into the learned-address table, each kept for its TTL and at least
   * `floorSeconds` (DEFAULT_TTL_FLOOR when absent).
   */
  learn(rules: readonly HostRule[], answers: readonly Answer[], floorSeconds = DEFAULT_TTL_FLOOR): void {
    learn(this.map("learned"), rules, answers, {
      nowBootNs: bootTimeNs(),
      floorSeconds,
      stats: this.map("dns_stats"),
    });
  }

  /** What learning from DNS answers in the kernel counted (bpf/dns_learn.bpf.h), summed over CPUs. */
  dnsStats(): DnsStats {
    return dnsStats(this.map("dns_stats"));
  }

  /** The learned-address table's entries, `expired` where the kernel no longer decides by them. */
  learnedEntries(): LearnedEntry[] {
    return learnedEntries(this.map("learned"), bootTimeNs());
  }

  /** A stream of decoded events from the (pinned) ring buffer. */
  events(onEvent: (event: RawEvent) => void): EventStream {
    return new EventStream(this.map("events"), onEvent);
  }

  /** Adds a temporary ingress allow entry; returns its id. The reaper removes it after `ttlMs`. */
  addSession(session: Session): number {
    return addSession(this.map("ingress_session"), session);
  }

  /** Removes a session by id; false when there was none. */
  removeSession(sessionId: number): boolean {
    return deleteSessions(this.map("ingress_session"), (session) => session.sessionId === sessionId) > 0;
  }

  /** Removes sessions whose expiry has passed; returns how many. */
  reapSessions(nowBootNs: bigint): number {
    return deleteSessions(this.map("ingress_session"), (session) => session.expiresBootNs <= nowBootNs);
  }

  /**
   * Pins again the held links among `wanted` whose pins were removed from outside (lib/agent/tamper_guard.ts)
   * while no other process works on the pins; undefined when one does or the pins are gone (a detach).
   */
  repinLinks(wanted: (name: string) => boolean): string[] | undefined {
    return whilePinsQuiet(this.#bpffs, () => this.#links.repinMissing(wanted));
  }

  /** Releases this process's handles. Pinned programs keep enforcing. */
  close(): void {
    this.#links.close();
    this.#programs.close();
    this.#object.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Removes every aegisbpf link, program and map pinned under `<bpffs>/aegisbpf/`: the clean uninstall.
   * Goes on past an entry it cannot remove and then throws a DetachError listing each. Returns the names
   * removed.
   */
  static detach(bpffs: string): string[] {
    return detachPins(bpffs);
  }

  #configMap(): BpfMap {
    return this.map("aegis_cfg");
  }
}
