/**
 * The agent (`aegisbpf run`): adopts or loads the pinned programs, applies its policy, streams decoded
 * events to the caller and to the bounded event log, keeps the mode words (break-glass, deadman, forced
 * audit) as the operator and the marker say, keeps file and exec rules fresh, and describes itself in
 * `<state-dir>/agent.json`. Stopping it leaves enforcement pinned.
 *
 * One writer: every change this agent makes to the live policy goes through one queue and is decided
 * under the state lock, against the state live then, never against a picture taken before the wait:
 * - start and SIGHUP take the lock, then choose the policy (`readAgentPolicy`: the newest operator intent
 *   wins) and check it in the helper, then apply it;
 * - an apply of a policy that is not the one in force is `applyPolicy`: a history entry;
 * - the same policy again (a restart, a SIGHUP with an unchanged file, a rule path replaced on disk) is a
 *   *refresh*: the plan resolved again and flipped into the other generation, `applied.json` updated to
 *   name that generation, and no history entry, since the policy did not change (file rules resolve paths
 *   at apply time; a refresh is that resolution done again). A refresh flips under the lock, and only while
 *   the live policy is still the one this agent holds: when another command changed it meanwhile, the
 *   pick-up takes that policy over instead.
 * Other commands (apply, rollback, canary, the API's helper) take the same lock; the agent picks their
 * changes up. `--audit` is a floor: the forced-audit word, held while the agent runs, whatever is applied.
 */

import { basename } from "node:path";
import { DataPlane } from "../kernel/dataplane.ts";
import {
  bootToWallOffsetNs,
  type EventContext,
  type GenerationTable,
  type PolicyRef,
} from "../kernel/events.ts";
import type { ResolvedRuleSet } from "../kernel/entries.ts";
import { forwardInterfaces } from "../kernel/resolve.ts";
import { type AppliedRecord, readApplied, writeApplied } from "../state/apply_state.ts";
import { currentEntry, type HistoryEntry, listHistory, previousEntry } from "../state/history.ts";
import {
  checkBudgetMs,
  checkedFlip,
  type CheckedPolicy,
  resolvePendingCheck,
  type RollBack,
} from "../ops/self_check.ts";
import { markerWriterAlive, readSelfCheckMarker } from "../state/self_check_marker.ts";
import type { Area, RuleSetPlan } from "../policy/plan.ts";
import { nextBoundary, windowClock } from "../policy/windows.ts";
import {
  bootTimeNs,
  type EnforceSignal,
  enforceSignalWord,
  writeEnforceSignal,
} from "../kernel/mode_words.ts";
import { ifName, type RawEvent } from "../../ffi/mod.ts";
import { releaseMemorySoon } from "./memory.ts";
import type { IngressSession } from "../api/app.ts";
import type { Logger } from "../cli/log.ts";
import type { AgentEventType, AnyEvent } from "./agent_events.ts";
import { type AgentState, type AreaMode, removeAgentState, writeAgentState } from "../state/agent_state.ts";
import { HEARTBEAT_MS, writeHeartbeat } from "../state/heartbeat.ts";
import {
  appliedShape,
  type ApplyInput,
  applyPolicy,
  flipGeneration,
  lockState,
  planAreas,
  resolveNames,
  settleInterruptedApply,
} from "../ops/apply.ts";
import { findStaleRules } from "../report/stale.ts";
import { type AgentLock, takeAgentLock } from "../state/agent_lock.ts";
import { choiceText } from "../ops/policy_choice.ts";
import type { StateLock } from "../state/files.ts";
import { BreakGlassWatch, cmdlineBreakGlass } from "./break_glass_watch.ts";
import { eventLogPath } from "./event_log.ts";
import { EventLogSink } from "./event_log_sink.ts";
import { RetryBackoff } from "./retry_backoff.ts";
import { FreshnessWatcher } from "./freshness.ts";
import { cgroupPaths, interfaceNames } from "./names.ts";
import { IngressSessions } from "./ingress_sessions.ts";
import { Timers } from "./timers.ts";
import { NameRefresher } from "./name_refresh.ts";
import { resolvePlanNames } from "../ops/learn_names.ts";
import { DirWatch } from "./dir_watch.ts";
import { markerPath } from "../state/break_glass_marker.ts";
import { appliedFile } from "../state/apply_state.ts";
import { Deadman } from "./deadman.ts";
import { ModeKeeper } from "./mode_keeper.ts";
import { shownWord, TamperGuard } from "./tamper_guard.ts";
import {
  describeTampering,
  recordTampering,
  removeFloorRecord,
  type TamperFinding,
  writeFloorRecord,
} from "../state/tamper_record.ts";
import { linksNeeded } from "../kernel/inspect.ts";
import { PROGRAMS } from "../kernel/object.ts";
import { optionalLsmPrograms, PTRACE_LSM_PROGRAMS } from "../kernel/load.ts";
import { forwardLinkName } from "../kernel/links.ts";
import { EventPipeline } from "./event_pipeline.ts";
import {
  changedRules,
  forwardChanged,
  type PartialArea,
  partialAreas,
  refuseUnsafeDirectories,
  refuseWithoutLsm,
} from "../ops/run_checks.ts";
import { type PreparedPolicy, preparePolicy, type PrepareRequest } from "../ops/prepare.ts";
import type { HelperProcess } from "../ops/helper_process.ts";
import { resolveForRefresh, type UnresolvedRule } from "../ops/refresh.ts";
import { messageOf } from "../errors.ts";

const AREAS: readonly Area[] = ["file", "exec", "egress", "bind", "ingress"];
/**
 * The agent waits on events rather than polling (README, "What the agent does when nothing happens"): the
 * ring buffer through epoll, the break-glass marker, applied.json and the link pins through inotify. Its
 * one periodic tick, the heartbeat's, also looks at what nothing notifies: the mode words (a `bpftool map
 * update`), the kernel's break-glass word, the forward interfaces, ingress sessions' TTLs; and it is the
 * fallback for a watch that could not be set up.
 */
const TICK_MS = HEARTBEAT_MS;
/**
 * After kernel events, the rate limit is flushed this long later (and again each such period while the
 * limiter holds entries): a rate window (2^30 ns) has ended by then, so a summary of suppressed decisions
 * comes within about two seconds of its window.
 */
const FLUSH_AFTER_EVENTS_MS = 1100;
/** A break-glass word with no marker is looked at again after this long (TamperGuard's settle time). */
const GLASS_RECHECK_MS = 150;
const APPLIED_WATCH = "applied state watch";
const LINKS_WATCH = "link pin watch";

export type AgentOptions = {
  bpffs: string;
  stateDir: string;
  configDir: string;
  /** `--audit` / `--enforce`; undefined: the policy's own mode. */
  requestedMode?: "audit" | "enforce";
  allowPartial: boolean;
  policyFile?: string;
  /** `--ingress IFACE`: interfaces XDP filters on, besides the policy's. */
  ingress: readonly string[];
  deadmanMs?: number;
  /** Where events go besides the event log (stdout): the event and its JSON line. */
  emit: (event: AnyEvent, line: string) => void;
  /**
   * Where the JSON lines of kernel events go besides the event log when only the line is wanted (stdout of
   * `--log-format json` with no API): UTF-8 with the newline, made straight from the record, valid only
   * during the call. Without it every event goes to `emit`.
   */
  emitJson?: (line: Uint8Array) => void;
  log: Logger;
  /** The cgroup the socket programs attach to: the cgroup v2 root by default. */
  cgroupPath?: string;
  /** `--enforce-signal`: the signal a denied task gets (the kernel's word, and the agent for socket hooks). */
  enforceSignal?: EnforceSignal;
  /** `--lock-timeout`: the longest wait for the state lock; the default of acquireStateLock when absent. */
  lockTimeoutMs?: number;
  /** A policy check process started ahead (helper_process.ts): the start's check goes to it. */
  helper?: HelperProcess;
};

/** A policy another command applied, from history. */
type AppliedPolicy = { prepared: PreparedPolicy; entry: HistoryEntry; time: string };

/** A prepared policy once applied: its text is in history, and not kept here. */
type Held = Omit<PreparedPolicy, "input"> & { input: Omit<ApplyInput, "content"> };

/** What is applied now. */
type Current = Held & { resolved: ResolvedRuleSet; partial: PartialArea[] };

export class Agent {
  readonly #options: AgentOptions;
  readonly #agentLock: AgentLock;
  readonly #plane: DataPlane;
  readonly #log: EventLogSink;
  readonly #host = Deno.hostname();
  readonly #startedAt = new Date().toISOString();
  readonly #tables: [GenerationTable | undefined, GenerationTable | undefined] = [undefined, undefined];
  readonly #events: EventPipeline;
  readonly #breakGlass: BreakGlassWatch;
  readonly #deadman: Deadman;
  readonly #modes: ModeKeeper;
  readonly #tamper: TamperGuard;
  readonly #tamperErrors = new Set<string>();
  /** Names of the interfaces XDP was attached to, by index, for ingress events. */
  readonly #interfaces = new Map<number, string>();
  #current: Current | undefined;
  #forwardRefreshQueued = false;
  #forwardTried: ResolvedRuleSet["forward"];
  #policyRef: PolicyRef | undefined;
  #generation = -1;
  /** applied.json's `time` as this agent last saw or wrote it. */
  #appliedTime: string | undefined;
  #lostSeen = 0n;
  #stream: ReturnType<DataPlane["events"]> | undefined;
  #freshness: FreshnessWatcher | undefined;
  /** File and exec rules the last refresh could not resolve (they keep their last inodes), by rule. */
  #unresolved = new Map<string, UnresolvedRule & { since: string }>();
  /** When the next time window of the policy in force opens or closes (windowClock's milliseconds). */
  #windowDue: number | undefined;
  readonly #timers = new Timers((error) => this.#options.log.warn(messageOf(error)));
  readonly #watches: DirWatch[] = [];
  /** The watches that could not be set up: the tick does their checks. */
  readonly #unwatched = new Set<string>();
  /** Kernel events came since the last rate-limit flush was scheduled. */
  #eventsSinceFlush = false;
  #queue: Promise<void> = Promise.resolve();
  /** Aborted by stop(): a reload or refresh waiting for the state lock gives up rather than hold stop up. */
  readonly #stopping = new AbortController();
  #busy = 0;
  #externalCheckQueued = false;
  #pendingCheckQueued = false;
  /** A deadman deadline held while another command runs its self-check probes. */
  #holdingForCommand = false;
  /** A pick-up that fails (its helper, the history entry) is tried again later and reported once. */
  readonly #pickUp = new RetryBackoff((error, retryInMs) =>
    this.#emit("agent.error", { error: `picking up another command's apply failed: ${error}`, retryInMs })
  );
  #stopped = false;
  readonly #sessions: IngressSessions;
  /** The policy's names, resolved again before their learned addresses expire. */
  readonly #names: NameRefresher;
  /** The names and floor the refresher holds: a refresh of the same policy does not resolve them again. */
  #namesKey = "";

  private constructor(options: AgentOptions, agentLock: AgentLock, plane: DataPlane, log: EventLogSink) {
    this.#options = options;
    this.#agentLock = agentLock;
    this.#plane = plane;
    this.#log = log;
    this.#sessions = new IngressSessions(plane);
    this.#names = new NameRefresher(
      plane,
      (message) => this.#options.log.warn(message),
      (plan, warn) => resolvePlanNames(plan, { warn }),
    );
    this.#modes = new ModeKeeper(plane, options.requestedMode === "audit");
    this.#deadman = new Deadman(plane, options.deadmanMs, (fields) => this.#emit("deadman.expired", fields));
    const otherInterfaces = interfaceNames(ifName);
    const context: EventContext = {
      host: this.#host,
      generations: this.#tables,
      bootToWallNs: bootToWallOffsetNs(),
      cgroupPath: cgroupPaths(),
      // net.forward names interfaces the policy does not (a tun device made after apply): asked of the kernel,
      // at most once a second each.
      interfaceName: (ifindex) => this.#interfaces.get(ifindex) ?? otherInterfaces(ifindex),
    };
    this.#events = new EventPipeline({
      log,
      emit: (event, line) => options.emit(event, line),
      ...(options.emitJson ? { emitJson: options.emitJson } : {}),
      context,
      enforceSignal: options.enforceSignal ?? "none",
      envelope: () => ({ host: this.#host, mode: this.#effectiveMode(), policy: this.#policyRef }),
      warn: (message) => options.log.warn(message),
    });
    this.#breakGlass = new BreakGlassWatch(
      options,
      cmdlineBreakGlass(),
      (message) => options.log.warn(message),
    );
    this.#tamper = new TamperGuard(options.bpffs, () => ({
      forceAudit: this.#modes.floor ? 1n : 0n,
      breakGlassAsked: () => this.#breakGlass.asked(),
      deadman: this.#deadman.deadlineNs,
      enforceSignal: enforceSignalWord(options.enforceSignal ?? "none"),
    }));
  }

  /**
   * Starts the agent; resolves once the policy is applied and events flow. A refusal (exit 3) or bad
   * input (exit 2) stops it before anything of the kernel changed but the adopted or loaded pins.
   */
  static async start(options: AgentOptions): Promise<Agent> {
    // What it reads and writes there must be its own: checked before anything is opened in them.
    refuseUnsafeDirectories(options, (message) => options.log.warn(message));
    // Before anything else: a second agent is refused at once, naming the first.
    const agentLock = await takeAgentLock(options.stateDir);
    let plane: DataPlane | undefined;
    let agent: Agent | undefined;
    try {
      // The policy is chosen, checked and applied under one hold of the state lock: no other writer's
      // change can land between the choice and the apply.
      using lock = await lockState(options.stateDir, "run", {
        wait: true,
        onWait: (message) => options.log.info(message),
        ...options.lockTimeoutMs !== undefined && { timeoutMs: options.lockTimeoutMs },
      });
      settleInterruptedApply({ bpffs: options.bpffs, stateDir: options.stateDir });
      const prepared = await preparePolicy(agentRequest(options, "start"), options.helper);
      const { plan } = prepared;
      // Names that do not resolve are bad input: found before anything is loaded.
      resolveNames(plan, () => {}, options.stateDir);
      refuseWithoutLsm(plan, allowsPartial(options), options.bpffs);
      plane = DataPlane.open({
        bpffs: options.bpffs,
        ...(options.cgroupPath === undefined ? {} : { cgroupPath: options.cgroupPath }),
      });
      partialAreas(plane, plan, allowsPartial(options));
      const log = new EventLogSink(eventLogPath(options.stateDir), (message) => options.log.warn(message));
      agent = new Agent(options, agentLock, plane, log);
      await agent.#begin(prepared, lock);
      return agent;
    } catch (error) {
      // Once agent.start is out, the log says how it ended.
      if (agent) await agent.stop("none", { error: messageOf(error) });
      else {
        plane?.close();
        agentLock[Symbol.dispose]();
      }
      throw error;
    }
  }

  async #begin(prepared: PreparedPolicy, _lock: StateLock): Promise<void> {
    const { deadmanMs } = this.#options;
    const { plan } = prepared;
    const words = this.#modes.takeOver();
    // Who asked for the word, for health once this agent has stopped (the word outlives it).
    if (this.#modes.floor) writeFloorRecord(this.#options.stateDir, "run --audit");
    else removeFloorRecord(this.#options.stateDir);
    // Every start sets the word: a run without --enforce-signal turns kill on deny off.
    writeEnforceSignal(this.#options.bpffs, this.#options.enforceSignal ?? "none");
    this.#generation = words.activeGen;
    await this.#learnActiveGeneration(prepared);
    this.#lostSeen = this.#plane.eventsLost();
    this.#emit("agent.start", {
      pid: Deno.pid,
      requestedMode: this.#options.requestedMode ?? plan.mode,
      policyMode: plan.mode,
      floor: this.#modes.floor ? "audit" : null,
      deadmanMs: deadmanMs ?? null,
      ingress: [...this.#options.ingress],
    });
    const glass = this.#breakGlass.start();
    if (glass) this.#emit("break_glass.on", glass.fields);
    this.#deadman.takeOver(words.deadmanDeadlineNs);
    // Refreshed from here on: an apply slower than the TTL (a loaded host) must not let the deadman expire.
    if (deadmanMs !== undefined) {
      this.#refreshDeadman();
      this.#timers.every(Math.min(1000, deadmanMs / 4), () => this.#refreshDeadman());
    }
    this.#stream = this.#plane.events((raw) => this.#onKernelEvent(raw));
    await this.#install(prepared, "start");
    this.#stream.start((error) => this.#options.log.warn(`event stream: ${messageOf(error)}`));
    this.#timers.every(TICK_MS, () => this.#tick());
    this.#watch();
    // What changed before the watches were in place (a marker made just as the policy was applied) is
    // seen now, not at the next tick.
    this.#checkGlass();
    this.#checkApplied();
  }

  /**
   * SIGHUP: under the state lock, chooses the policy again (a file older than a policy applied since is not
   * taken: see policy_source.ts), checks everything, and applies it; on failure keeps the old one.
   */
  reload(why: "reload" | "window" = "reload"): Promise<void> {
    return this.#serial(async () => {
      try {
        using _lock = await this.#lockState("run (reload)");
        settleInterruptedApply({ bpffs: this.#options.bpffs, stateDir: this.#options.stateDir });
        const prepared = await preparePolicy(agentRequest(this.#options, "reload"));
        partialAreas(this.#plane, prepared.plan, allowsPartial(this.#options));
        await this.#install(prepared, why);
      } catch (error) {
        const kept = this.#policyRef && `${this.#policyRef.name} version ${this.#policyRef.version}`;
        this.#emit("policy.reload_failed", { error: messageOf(error), kept: kept ?? null });
        this.#options.log.warn(`reload failed, still enforcing ${kept}: ${messageOf(error)}`);
      }
    });
  }

  /**
   * SIGUSR2 (the package's dpkg hook, after a dpkg run): the policy in force resolved again, as a rule
   * refresh does, and flipped when an inode changed: `trust: dpkg` takes the files of the packages
   * installed or upgraded since, and drops those removed. The policy file is not read again (that is
   * SIGHUP's job): a dpkg run never applies an edit the operator has not asked for.
   */
  refreshPackages(): Promise<void> {
    this.#options.log.info("SIGUSR2: resolving the policy in force again (a dpkg run ended)");
    return this.#serial(() => this.#refreshRules());
  }

  /** How long the agent waits for the state lock, and the signal that ends the wait when it stops. */
  #lockWait(): { timeoutMs?: number; signal: AbortSignal } {
    const { lockTimeoutMs } = this.#options;
    return {
      signal: this.#stopping.signal,
      ...(lockTimeoutMs === undefined ? {} : { timeoutMs: lockTimeoutMs }),
    };
  }

  /** Stops cleanly: last events drained, deadman cleared, agent.json removed. Enforcement stays pinned. */
  async stop(signal: string, why: { error?: string } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#timers.clear();
    for (const watch of this.#watches) watch.close();
    this.#freshness?.close();
    this.#stopping.abort(new Error("the agent is stopping"));
    await this.#queue;
    try {
      this.#plane.flushRateLimits();
      this.#stream?.poll();
    } catch (error) {
      this.#options.log.warn(`last events: ${messageOf(error)}`);
    }
    this.#stream?.close();
    // A clean stop is not a wedged agent: enforcement stays as it is, with no deadline to fall back.
    if (this.#options.deadmanMs !== undefined) this.#plane.setConfig({ deadmanDeadlineNs: 0n });
    this.#emit("agent.stop", { signal, pid: Deno.pid, ...why });
    removeAgentState(this.#options.stateDir);
    this.#log.close();
    this.#plane.close();
    this.#agentLock[Symbol.dispose]();
  }

  #lockState(command: string): Promise<StateLock> {
    return lockState(this.#options.stateDir, command, {
      wait: true,
      onWait: (message) => this.#options.log.info(message),
      ...this.#lockWait(),
    });
  }

  /** The name of rule `ruleId` of generation `gen` as this agent knows it, `#N` when it does not. */
  ruleName(gen: number, ruleId: number): string {
    return this.#tables[gen]?.rules.name(ruleId) ?? `#${ruleId}`;
  }

  /** The tags of rule `ruleId` of generation `gen`, for metrics labels. */
  ruleTags(gen: number, ruleId: number): readonly string[] | undefined {
    return this.#tables[gen]?.rules.get(ruleId)?.tags;
  }

  get state(): AgentState {
    const plan = this.#current!.plan;
    const mode = this.#effectiveMode();
    const used = new Set(planAreas(plan));
    const areas = Object.fromEntries(AREAS.map((area): [Area, AreaMode] => [
      area,
      !used.has(area)
        ? "unused"
        : mode === "enforce" && this.#plane.status[area].mode === "enforce"
        ? "enforce"
        : "audit-only",
    ])) as Record<Area, AreaMode>;
    return {
      pid: Deno.pid,
      startedAt: this.#startedAt,
      mode,
      requestedMode: this.#options.requestedMode ?? plan.mode,
      policyMode: plan.mode,
      floor: this.#modes.floor ? "audit" : null,
      areas,
      partial: this.#current!.partial,
      ingress: plan.ingress.interfaces.map((iface) => iface.name),
      deadmanMs: this.#options.deadmanMs ?? null,
      policy: this.#policyRef!,
      eventsLog: this.#log.path,
      unresolved: [...this.#unresolved.values()],
    };
  }

  /**
   * Applies `plan`: a history entry when it is not the policy in force, a refresh otherwise (see the top of
   * this file). Resolves names first: a missing path is bad input and nothing changes. The caller holds the
   * state lock, taken before the policy was chosen.
   */
  async #install(prepared: PreparedPolicy, why: "start" | "reload" | "window"): Promise<void> {
    const { input, plan } = prepared;
    // The default policy names paths many hosts lack, on purpose: not worth a warning at every start.
    const level = prepared.origin === "default" ? "debug" : "warn";
    const warn = (message: string) => this.#options.log[level](message);
    if (prepared.choice) {
      const text = choiceText(prepared.choice);
      if (prepared.choice.kind === "replaced") this.#options.log.warn(text);
      else this.#options.log.info(text);
    }
    const resolved = resolveNames(plan, warn, this.#options.stateDir);
    // Under the --audit floor every area audits: none is audit-only for want of --allow-partial.
    const partial = this.#modes.floor ? [] : partialAreas(this.#plane, plan, this.#options.allowPartial);
    for (const { area, reason } of partial) warn(`${area} runs audit-only (--allow-partial): ${reason}`);
    const { stateDir, bpffs } = this.#options;
    this.#busy++;
    const checked = checkedPlan(plan);
    // Until the probes of a policy with checks pass, an agent killed or stuck leaves the kernel to audit.
    if (plan.checks) this.#deadman.hold(checkBudgetMs(checked, this.#options));
    try {
      const applied = readApplied(stateDir);
      const inForce = currentEntry(listHistory(stateDir));
      const same = applied !== undefined && inForce?.seq === applied.seq && applied.sha256 === input.sha256 &&
        this.#plane.config().activeGen === applied.generation;
      let generation: number;
      let history: number | "unchanged";
      const identity = { sha256: input.sha256, name: input.name, version: input.version };
      const guard = {
        holder: `run (${why})`,
        rollBack: agentRollBack(this.#options, warn),
        emit: (type: AgentEventType, fields: Record<string, unknown>) => this.#emit(type, fields),
      };
      if (same) {
        // A refresh that changes the rules runs the probes too; a failure puts the entry before it back.
        const refreshed = await checkedFlip(
          this.#options,
          checked,
          identity,
          { ...guard, previousOf: () => previousEntry(listHistory(stateDir)) },
          async () => ({ entry: inForce, generation: await this.#refreshInto(applied, resolved) }),
        );
        generation = refreshed.generation;
        history = "unchanged";
      } else {
        const result = await checkedFlip(this.#options, checked, identity, guard, () =>
          applyPolicy({
            bpffs,
            stateDir,
            input,
            plan,
            outcome: "applied",
            allowPartial: true,
            warn: () => {},
          }));
        generation = result.generation;
        history = result.entry.seq;
      }
      // Every rule resolved: none is left on its last inodes.
      this.#unresolved.clear();
      this.#adopt(prepared, resolved, partial, generation);
      this.#emit("policy.applied", {
        source: input.source,
        origin: prepared.origin,
        reason: why,
        history,
        generation,
        requestedMode: this.#options.requestedMode ?? plan.mode,
        policyMode: plan.mode,
        ...prepared.choice && { choice: { ...prepared.choice, text: choiceText(prepared.choice) } },
      });
    } finally {
      if (plan.checks) this.#releaseHold();
      this.#busy--;
    }
  }

  /** Releases a deadline held for probes (this agent's own, or another command's it was holding). */
  #releaseHold(): void {
    this.#holdingForCommand = false;
    this.#deadman.release();
  }

  /**
   * A self-check a killed command left pending (self-check.json, its writer gone): finished here under the
   * state lock, as the next command would (lib/ops/self_check.ts); a failure puts the entry before back,
   * which the pick-up then takes over.
   */
  #checkPendingSelfCheck(): void {
    if (this.#stopped || this.#busy > 0 || this.#pendingCheckQueued) return;
    let marker;
    try {
      marker = readSelfCheckMarker(this.#options.stateDir);
    } catch {
      return;
    }
    // Another command runs its probes now: a deadman deadline meanwhile, so that a policy it cannot take back
    // (it hangs) falls back to audit; released once the marker is gone.
    if (marker && marker.pid !== Deno.pid && markerWriterAlive(marker)) {
      if (!this.#holdingForCommand) this.#deadman.hold(marker.budgetMs ?? COMMAND_CHECK_BUDGET_MS);
      this.#holdingForCommand = true;
      return;
    }
    if (this.#holdingForCommand) this.#releaseHold();
    if (!marker || markerWriterAlive(marker)) return;
    this.#pendingCheckQueued = true;
    void this.#serial(async () => {
      this.#busy++;
      try {
        using _lock = await this.#lockState("run (pending self-check)");
        const { stateDir, bpffs } = this.#options;
        settleInterruptedApply({ bpffs, stateDir });
        const warn = (message: string) => this.#options.log.warn(message);
        const said = await resolvePendingCheck(this.#options, {
          policyOf: async (entry) => {
            const checked = checkedPlan(
              (await preparePolicy({ what: "stored", stateDir, seq: entry.seq })).plan,
            );
            // As for the agent's own apply: a deadline while the probes run.
            this.#deadman.hold(checkBudgetMs(checked, this.#options));
            return checked;
          },
          rollBack: agentRollBack(this.#options, warn),
          emit: (type, fields) => this.#emit(type, fields),
        });
        if (said !== undefined) warn(said);
      } catch (error) {
        this.#emit("agent.error", { error: `finishing a pending self-check failed: ${messageOf(error)}` });
      } finally {
        this.#releaseHold();
        this.#busy--;
        this.#pendingCheckQueued = false;
      }
    }).then(() => this.#checkApplied());
  }

  /** Records what generation `generation` now holds, and watches its rule paths. */
  #adopt(held: Held, resolved: ResolvedRuleSet, partial: Current["partial"], generation: number): void {
    const { name, version, sha256, source, kind, keyid } = held.input;
    this.#policyRef = { name, version, sha256 };
    this.#tables[generation] = { rules: held.rules, policy: this.#policyRef };
    for (const iface of resolved.interfaces) this.#interfaces.set(iface.ifindex, iface.name);
    this.#generation = generation;
    this.#appliedTime = readApplied(this.#options.stateDir)?.time;
    const input = { source, kind, sha256, name, version, ...keyid !== undefined && { keyid } };
    this.#current = { input, origin: held.origin, plan: held.plan, rules: held.rules, resolved, partial };
    const namesKey = JSON.stringify([held.plan.egressHosts ?? [], held.plan.nameTtlFloor]);
    if (namesKey !== this.#namesKey) {
      this.#namesKey = namesKey;
      this.#names.use(held.plan);
    }
    this.#watchRulePaths();
    this.#windowDue = nextBoundary(held.plan.windows ?? [], windowClock());
    this.#writeState();
    // Loading the object and applying leave megabytes of garbage behind (lib/agent/memory.ts).
    releaseMemorySoon();
  }

  /** Watches the current plan's rule paths (the watcher keeps running across refreshes: no gap). */
  #watchRulePaths(): void {
    if (this.#stopped) return;
    const plan = this.#current!.plan;
    this.#freshness ??= new FreshnessWatcher(
      () => void this.#serial(() => this.#refreshRules()),
      (error) => this.#options.log.warn(`rule path watcher stopped: ${messageOf(error)}`),
      (warning) => this.#options.log.warn(warning),
    );
    // The programs rules name too: a package upgrade renames a new binary over the one resolved at apply.
    const programs = (plan.subjects ?? []).map(({ ruleId, exe, optional }) => ({
      ruleId,
      path: exe,
      optional,
    }));
    this.#freshness.update([...plan.files, ...plan.exec, ...plan.protect ?? [], ...programs]);
  }

  /**
   * A refresh: the policy in force resolved again, flipped into the other generation, and applied.json
   * updated to name it with the inodes now denied (for health's stale-rule check). The caller holds the lock.
   */
  async #refreshInto(applied: AppliedRecord, resolved: ResolvedRuleSet): Promise<number> {
    const generation = await flipGeneration(
      this.#plane,
      resolved,
      (message) => this.#options.log.warn(message),
    );
    writeApplied(this.#options.stateDir, {
      ...applied,
      ...appliedShape(resolved),
      generation,
      time: new Date().toISOString(),
    });
    return generation;
  }

  /**
   * A refresh of the policy in force (a rule path changed, the dpkg hook) that runs its probes when it has
   * checks, as an apply does: a failure puts the entry before it back and throws SelfCheckFailedError (the
   * caller reports it; the pick-up takes the entry put back over). A deadline is held while the probes run.
   */
  async #checkedRefresh(
    current: Current,
    applied: AppliedRecord,
    resolved: ResolvedRuleSet,
  ): Promise<number> {
    if (!current.plan.checks) return await this.#refreshInto(applied, resolved);
    const { stateDir } = this.#options;
    const checked = checkedPlan(current.plan);
    const { input } = current;
    const warn = (message: string) => this.#options.log.warn(message);
    this.#deadman.hold(checkBudgetMs(checked, this.#options));
    try {
      const refreshed = await checkedFlip(
        this.#options,
        checked,
        { sha256: input.sha256, name: input.name, version: input.version },
        {
          holder: "run (rule refresh)",
          rollBack: agentRollBack(this.#options, warn),
          emit: (type: AgentEventType, fields: Record<string, unknown>) => this.#emit(type, fields),
          previousOf: () => previousEntry(listHistory(stateDir)),
        },
        async () => ({
          entry: currentEntry(listHistory(stateDir))!,
          generation: await this.#refreshInto(applied, resolved),
        }),
      );
      return refreshed.generation;
    } finally {
      this.#releaseHold();
    }
  }

  /**
   * A rule path changed on disk: resolve again, and if an inode differs flip, under the state lock and only
   * while the live policy is still the one this agent holds. When another writer changed the live policy
   * while this waited, nothing is flipped: the pick-up takes the new policy over (and watches its paths).
   */
  async #refreshRules(): Promise<void> {
    const current = this.#current;
    if (!current || this.#stopped) return;
    const { stateDir } = this.#options;
    // Resolved before the lock: a million-file tree takes seconds to walk, and other writers must not wait
    // for it. A path that changes again after this walk fires the watcher again.
    // A rule whose path no longer resolves keeps its last inodes (see ops/refresh.ts) and is reported; the
    // others are refreshed all the same.
    let resolved: ResolvedRuleSet;
    try {
      const refresh = resolveForRefresh(current.plan, readApplied(stateDir), stateDir);
      resolved = refresh.resolved;
      this.#noteUnresolved(refresh.unresolved);
    } catch (error) {
      // A scope cgroup or an interface gone: nothing can be flipped until it is back.
      this.#options.log.warn(`rule paths changed, not re-applied: ${messageOf(error)}`);
      this.#watchRulePaths();
      return;
    }
    // Against what the kernel holds too: a pick-up adopts a policy resolved by another command, which a file
    // replaced meanwhile (its refresh skipped while that command held the lock) no longer matches. A rule
    // left on its last inodes is stale by design (its path is gone), not a reason to flip.
    const stale = findStaleRules(readApplied(stateDir)).stale.map((rule) => rule.rule)
      .filter((rule) => !this.#unresolved.has(rule));
    const changed = [...new Set([...changedRules(current.resolved, resolved), ...stale])];
    if (changed.length === 0) {
      this.#watchRulePaths();
      this.#writeState();
      return;
    }
    this.#busy++;
    try {
      using _lock = await this.#lockState("run (rule refresh)");
      // Flip only into the policy that is still live: applied.json and the kernel's word name it, and this
      // agent has not taken another over while it waited. Else the pick-up takes the new one over.
      const applied = readApplied(stateDir);
      const active = this.#plane.config().activeGen;
      if (
        this.#stopped || current !== this.#current || !applied || applied.sha256 !== current.input.sha256 ||
        applied.generation !== active || active !== this.#generation
      ) {
        this.#options.log.debug("rule refresh skipped: the live policy changed meanwhile");
        return;
      }
      const generation = await this.#checkedRefresh(current, applied, resolved);
      this.#adopt(current, resolved, current.partial, generation);
      this.#emit("policy.refreshed", { rules: changed, generation });
    } catch (error) {
      this.#emit("agent.error", { error: `rule refresh failed: ${messageOf(error)}` });
    } finally {
      this.#busy--;
    }
  }

  /**
   * The policy of generation `generation` when another command applied it (or before this agent started):
   * applied.json names the history entry whose policy the generation holds.
   */
  async #appliedPolicyOf(generation: number): Promise<AppliedPolicy | undefined> {
    const { stateDir } = this.#options;
    const applied = readApplied(stateDir);
    if (!applied || applied.generation !== generation) return undefined;
    const entry = listHistory(stateDir).find((candidate) => candidate.seq === applied.seq);
    if (!entry) return undefined;
    const prepared = await preparePolicy({ what: "stored", stateDir, seq: entry.seq });
    return { prepared, entry, time: applied.time };
  }

  /**
   * Learns the rule table of the live generation, for events queued before the first apply: `starting`'s
   * own when applied.json says the live generation holds that same policy (a restart), else the table of
   * the history entry it names, through a helper.
   */
  async #learnActiveGeneration(starting: PreparedPolicy): Promise<void> {
    const applied = readApplied(this.#options.stateDir);
    if (applied?.generation === this.#generation && applied.sha256 === starting.input.sha256) {
      const { name, version, sha256 } = starting.input;
      this.#tables[this.#generation] = { rules: starting.rules, policy: { name, version, sha256 } };
      return;
    }
    const found = await this.#appliedPolicyOf(this.#generation);
    if (!found) return;
    const { name, version, sha256 } = found.prepared.input;
    this.#tables[this.#generation] = { rules: found.prepared.rules, policy: { name, version, sha256 } };
  }

  /** Whether the kernel or applied.json moved since this agent last looked (see #checkExternalApply). */
  #externalApplySeen(): boolean {
    const active = this.#plane.config().activeGen;
    return active !== this.#generation || readApplied(this.#options.stateDir)?.time !== this.#appliedTime;
  }

  /**
   * Notices an apply or rollback by another command: the generation word moved, or applied.json changed
   * (two flips between ticks leave the word where it was). Until applied.json names the live generation
   * (it is written just after the flip) that generation's events read as unresolved, never with an old
   * table; then the agent takes the policy over: rule table, agent.json, freshness watch.
   */
  async #checkExternalApply(): Promise<void> {
    if (this.#stopped || !this.#externalApplySeen()) return;
    const active = this.#plane.config().activeGen;
    if (active !== this.#generation) {
      this.#tables[active] = undefined;
      this.#generation = active;
    }
    const found = await this.#appliedPolicyOf(active);
    // Moved again while the policy was read: the next tick looks again.
    if (!found || this.#stopped || this.#plane.config().activeGen !== active) return;
    this.#appliedTime = found.time;
    const { prepared, entry } = found;
    const { plan } = prepared;
    let resolved: ResolvedRuleSet;
    try {
      // A rule path gone since that command resolved it keeps the inodes it applied (reported as such).
      const refresh = resolveForRefresh(plan, readApplied(this.#options.stateDir), this.#options.stateDir);
      resolved = refresh.resolved;
      this.#noteUnresolved(refresh.unresolved);
    } catch {
      // A scope cgroup or an interface gone since: nothing to refresh from; the rules stay as applied.
      resolved = {
        plan,
        files: [],
        exec: [],
        protect: [],
        scope: { include: [], exempt: [] },
        interfaces: [],
      };
    }
    this.#adopt(prepared, resolved, partialAreas(this.#plane, plan, true), active);
    const rollback = entry.restoredSeq === undefined ? {} : { restored: entry.restoredSeq };
    this.#emit(entry.restoredSeq === undefined ? "policy.applied" : "policy.rolled_back", {
      source: "another command",
      history: entry.seq,
      generation: active,
      ...rollback,
    });
    // A denied file replaced while that command held the lock: its refresh was skipped, so do it now.
    if (findStaleRules(readApplied(this.#options.stateDir)).stale.length > 0) {
      void this.#serial(() => this.#refreshRules());
    }
  }

  /**
   * Records the rules a refresh could not resolve (agent.json, for health and metrics) and reports each
   * once as `rule.unresolved` when it starts failing or fails otherwise; a rule resolved again is dropped.
   */
  #noteUnresolved(unresolved: readonly UnresolvedRule[]): void {
    const now = new Date().toISOString();
    const next = new Map<string, UnresolvedRule & { since: string }>();
    for (const rule of unresolved) {
      const was = this.#unresolved.get(rule.rule);
      const same = was?.error === rule.error && was.path === rule.path;
      next.set(rule.rule, { ...rule, since: same ? was.since : now });
      if (!same) {
        this.#options.log.warn(
          `${rule.error}: the rule keeps denying the inodes it denied (${rule.kept}) until its path is back; ` +
            "the other rules are refreshed",
        );
        this.#emit("rule.unresolved", { ...rule });
      }
    }
    this.#unresolved = next;
  }

  #onKernelEvent(raw: RawEvent): void {
    this.#eventsCame();
    this.#events.kernel(raw, () => this.#current?.plan.scope.exempt ?? []);
  }

  /**
   * Opens `cidr` (optionally `ports`) through the interfaces this agent filters with `default: drop` (or the
   * one named) for `ttlMs` (see IngressSessions.open).
   */
  addIngressSession(
    request: { cidr: string; ports: readonly number[]; ttlMs: number; interface?: string },
  ): IngressSession {
    const plan = this.#current?.plan;
    if (!plan) throw new Error("no policy applied yet");
    return this.#sessions.open(plan, request);
  }

  /** Closes a session before its TTL; false when there is none by that id. */
  removeIngressSession(id: string): boolean {
    return this.#sessions.close(id);
  }

  /** Watches the marker, applied.json and the link pins (see TICK_MS). */
  #watch(): void {
    const { configDir, stateDir, bpffs } = this.#options;
    // A directory that does not exist (no config directory yet) is no problem worth a warning.
    const warn = (what: string) => (error: unknown) => {
      this.#unwatched.add(what);
      this.#options.log[error instanceof Deno.errors.NotFound ? "debug" : "warn"](
        `${what}: ${messageOf(error)}: looked at every ${TICK_MS / 1000} s instead`,
      );
    };
    const marker = basename(markerPath(configDir));
    const applied = basename(appliedFile(stateDir));
    this.#watches.push(
      new DirWatch(
        configDir,
        (name) => name === marker,
        () => this.#checkGlass(),
        warn("break-glass marker watch"),
      ),
      new DirWatch(
        stateDir,
        (name) => name === applied,
        () => this.#checkApplied(),
        warn(APPLIED_WATCH),
      ),
      new DirWatch(
        `${bpffs}/aegisbpf/links`,
        () => true,
        () => this.#checkTampering("link pins", () => this.#repinLinks()),
        warn(LINKS_WATCH),
      ),
    );
  }

  /** The heartbeat, and every check nothing notifies (see TICK_MS). */
  #tick(): void {
    writeHeartbeat(this.#options.stateDir);
    // A time window opens or closes: the policy compiled for now and flipped in, as a reload does.
    if (this.#windowDue !== undefined && windowClock() >= this.#windowDue) {
      this.#windowDue = undefined;
      void this.reload("window");
    }
    // The mode words and the kernel's break-glass word: nothing notifies a map write.
    this.#checkGlass();
    if (this.#unwatched.has(LINKS_WATCH)) this.#checkTampering("link pins", () => this.#repinLinks());
    // applied.json is watched; the tick looks when it is not, when a pick-up that failed waits for its next
    // try (see #pickUp), and when the generation word moved with no applied.json written.
    if (
      this.#unwatched.has(APPLIED_WATCH) || this.#pickUp.pending ||
      this.#plane.config().activeGen !== this.#generation
    ) this.#checkApplied();
    this.#checkForwardInterfaces();
    this.#checkPendingSelfCheck();
    this.#sessions.reap(bootTimeNs());
    void this.#names.tick();
    this.#checkLost();
  }

  /** The mode words put back if something else wrote them, then the break-glass marker and word followed. */
  #checkGlass(): void {
    if (this.#stopped) return;
    // Before the marker: a word put back here is never reported as a break-glass change, nor is one about
    // to be (a marker made meanwhile settles it at the next look).
    this.#checkTampering("mode words", () => this.#tamper.checkWords());
    if (this.#tamper.breakGlassPending) {
      this.#timers.once(GLASS_RECHECK_MS, () => this.#checkGlass());
      return;
    }
    const change = this.#breakGlass.poll();
    if (change) {
      this.#emit(change.on ? "break_glass.on" : "break_glass.off", change.fields);
      this.#writeState();
    }
  }

  /**
   * Kernel events came: the rate limit's summaries and the lost count are looked at a window later, and
   * again each window while the limiter holds entries. A flood's last window has its burst's events before
   * the flush its previous window's events scheduled, and none after it: the flush that reports its
   * suppressed count is one the limiter's entries asked for, not an event.
   */
  #eventsCame(): void {
    if (this.#stopped || this.#eventsSinceFlush) return;
    this.#eventsSinceFlush = true;
    this.#timers.once(FLUSH_AFTER_EVENTS_MS, () => {
      this.#eventsSinceFlush = false;
      if (this.#stopped) return;
      let held = false;
      try {
        held = this.#plane.flushRateLimits();
      } finally {
        this.#checkLost();
      }
      if (held) this.#eventsCame();
    });
  }

  #checkLost(): void {
    const lost = this.#plane.eventsLost();
    if (lost > this.#lostSeen) {
      this.#emit("events.dropped", { count: Number(lost - this.#lostSeen), total: Number(lost) });
      this.#lostSeen = lost;
    }
  }

  /** Another command's apply or rollback taken over (see #checkExternalApply). */
  #checkApplied(): void {
    if (this.#stopped) return;
    if (this.#busy === 0 && !this.#externalCheckQueued && this.#externalApplySeen()) {
      const key = `${this.#plane.config().activeGen} ${readApplied(this.#options.stateDir)?.time}`;
      if (!this.#pickUp.due(key)) return;
      this.#externalCheckQueued = true;
      void this.#serial(() =>
        this.#pickUp.run(key, () => this.#checkExternalApply()).finally(() =>
          this.#externalCheckQueued = false
        )
      );
    }
  }

  /**
   * Pins again a link of the policy in force whose pin was removed from outside while this agent holds it:
   * else enforcement would end with this process. Only while the agent and the live policy agree (another
   * command's apply removes links it no longer needs, and the pick-up follows).
   */
  #repinLinks(): TamperFinding[] {
    const current = this.#current;
    if (!current || this.#busy > 0 || this.#externalApplySeen()) return [];
    const interfaces = current.resolved.interfaces.map((iface) => iface.name);
    const wanted = new Set(planAreas(current.plan).flatMap((area) => linksNeeded(area, interfaces).flat(2)));
    if (current.plan.scopeGuard) wanted.add(PROGRAMS.scopeGuard);
    if (current.plan.ptraceGuard) { for (const name of PTRACE_LSM_PROGRAMS) wanted.add(name); }
    // The file area's hooks some kernels lack (POSIX ACLs): wanted where attached, never required.
    if (planAreas(current.plan).includes("file")) {
      for (const name of optionalLsmPrograms()) {
        wanted.add(name);
      }
    }
    for (const iface of current.resolved.forward ?? []) wanted.add(forwardLinkName(iface.name));
    const repinned = this.#plane.repinLinks((name) => wanted.has(name)) ?? [];
    return repinned.map((link) => ({ what: "link", found: "unpinned", restored: "pinned", link }));
  }

  /**
   * Runs one tamper check and reports what it found changed behind this agent's back and put back: event,
   * record (health, metric). A check that fails is reported and never holds up the rest of the tick.
   */
  #checkTampering(what: string, check: () => TamperFinding[]): void {
    let findings: TamperFinding[];
    try {
      findings = check();
    } catch (error) {
      // Said once per distinct failure, not four times a second.
      const message = `tamper check of the ${what} failed: ${messageOf(error)}`;
      if (!this.#tamperErrors.has(message)) this.#emit("agent.error", { error: message });
      this.#tamperErrors.add(message);
      if (this.#tamperErrors.size > 16) this.#tamperErrors.clear();
      return;
    }
    if (findings.length === 0) return;
    for (const finding of findings) {
      this.#emit("tamper.detected", { ...finding });
      this.#options.log.warn(`tampering: ${describeTampering(finding)}`);
    }
    recordTampering(this.#options.stateDir, findings);
  }

  /**
   * network.egress.forwarded judges forwarded packets on the interfaces of the last resolve: one added or
   * removed since (a new tunnel) is taken in by a refresh, within a slow tick.
   */
  #checkForwardInterfaces(): void {
    const current = this.#current;
    if (!current?.plan.forwarded || this.#busy > 0 || this.#forwardRefreshQueued) return;
    const now = forwardInterfaces();
    // Tried once per set of interfaces: a refresh that failed (reported as agent.error) is not repeated
    // every tick, only when the interfaces change again.
    if (!forwardChanged(current.resolved.forward, now) || !forwardChanged(this.#forwardTried, now)) return;
    this.#forwardTried = now;
    this.#forwardRefreshQueued = true;
    void this.#serial(() => this.#refreshRules()).finally(() => this.#forwardRefreshQueued = false);
  }

  #refreshDeadman(): void {
    if (this.#stopped) return;
    // A deadline changed behind this agent's back is found before the refresh writes over it: by the words
    // check, or, when that one could not look (another process held the pins) or the word changed just
    // after it looked, by the refresh itself, which sees a deadline it did not write.
    this.#checkTampering("mode words", () => this.#tamper.checkWords());
    this.#checkTampering("deadman", () => {
      const found = this.#plane.config().deadmanDeadlineNs;
      const wrote = this.#deadman.deadlineNs;
      this.#deadman.refresh();
      if (found === wrote) return [];
      const restored = this.#deadman.deadlineNs;
      return [{ what: "deadman", found: shownWord(found), restored: shownWord(restored) }];
    });
  }

  #effectiveMode(): "enforce" | "audit" {
    return this.#modes.effective(this.#current?.plan.mode);
  }

  #writeState(): void {
    if (this.#current && !this.#stopped) writeAgentState(this.#options.stateDir, this.state);
  }

  #emit(type: AgentEventType, fields: Record<string, unknown>): void {
    this.#events.agent(type, fields);
  }

  /** Runs changes of the rule set one at a time. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(fn).catch((error) => {
      this.#options.log.error(messageOf(error));
    });
    this.#queue = next;
    return next;
  }
}

/** The deadline held for another command's probes when its marker does not say how long they may take. */
const COMMAND_CHECK_BUDGET_MS = 120_000;

/** What the probes need of a plan: the agent holds no parsed policy. */
function checkedPlan(plan: RuleSetPlan): CheckedPolicy {
  return { spec: { mode: plan.mode, checks: plan.checks, scope: { cgroups: plan.scope.include } } };
}

/**
 * What a failed self-check puts back, as `policy rollback` would (see apply_text.ts's rollBackTo): loaded
 * only then, since it parses the stored policy in this process.
 */
function agentRollBack(options: AgentOptions, warn: (message: string) => void): RollBack {
  return async (previous) => (await import("../ops/apply_text.ts")).rollBackTo(options, warn)(previous);
}

/** Whether the agent's own applies may run areas audit-only: `--allow-partial`, or the `--audit` floor. */
function allowsPartial(options: AgentOptions): boolean {
  return options.allowPartial || options.requestedMode === "audit";
}

/** What `run` asks the policy check process for: the policy it applies, with the run flags over it. */
function agentRequest(options: AgentOptions, why: "start" | "reload"): PrepareRequest {
  return {
    what: "agent",
    why,
    configDir: options.configDir,
    stateDir: options.stateDir,
    ingress: [...options.ingress],
    ...options.policyFile !== undefined && { policyFile: options.policyFile },
    ...options.requestedMode !== undefined && { requestedMode: options.requestedMode },
  };
}
