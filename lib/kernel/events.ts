import { bootTimeNs, type BpfMap, decodeEvent, type RawEvent, RingBuffer } from "../../ffi/mod.ts";
import type { RuleInfo } from "../policy/plan.ts";

/** Event types by hook number (AEGIS_HOOK_* in bpf/aegis.h). */
export const EVENT_TYPES = [
  "file.open",
  "exec",
  "net.connect",
  "net.sendmsg",
  "net.bind",
  "net.ingress",
] as const;
export type KernelEventType = typeof EVENT_TYPES[number];

/** An event as SPEC section 6 prints it. */
export type AegisEvent = {
  ts: string;
  host: string;
  type: KernelEventType;
  decision: "deny" | "audit";
  mode: "enforce" | "audit";
  rule: string;
  policy?: { name: string; version: number; sha256: string };
  process?: {
    pid: number;
    ppid: number;
    uid: number;
    gid: number;
    comm: string;
    cgroup: { id: number; path?: string };
  };
  file?: { path?: string; dev: number; ino: number };
  net?: {
    family: "ipv4" | "ipv6";
    protocol: string;
    daddr?: string;
    dport?: number;
    saddr?: string;
    sport?: number;
    interface?: string;
  };
  count: number;
};

export type EventContext = {
  host: string;
  rules: readonly RuleInfo[];
  policy?: { name: string; version: number; sha256: string };
  /** Wall-clock ns minus CLOCK_BOOTTIME ns, to date kernel timestamps. */
  bootToWallNs: bigint;
  cgroupPath?: (id: bigint) => string | undefined;
  interfaceName?: (ifindex: number) => string | undefined;
};

/** Wall-clock minus boot-clock offset, measured now. */
export function bootToWallOffsetNs(): bigint {
  const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  return wall - bootTimeNs();
}

/** RFC 3339 UTC with nanoseconds. */
export function rfc3339Nanos(epochNs: bigint): string {
  const ms = epochNs / 1_000_000n;
  const base = new Date(Number(ms)).toISOString().slice(0, 19);
  const nanos = (epochNs % 1_000_000_000n).toString().padStart(9, "0");
  return `${base}.${nanos}Z`;
}

const PROTOCOLS: Readonly<Record<number, string>> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

/** Turns a kernel record into the SPEC event. Pure: everything it needs is in `context`. */
export function formatEvent(raw: RawEvent, context: EventContext): AegisEvent {
  const type = EVENT_TYPES[raw.hook] ?? "file.open";
  const rule = context.rules[raw.ruleId];
  const event: AegisEvent = {
    ts: rfc3339Nanos(raw.tsBootNs + context.bootToWallNs),
    host: context.host,
    type,
    decision: raw.decision === 0 ? "deny" : "audit",
    mode: raw.mode === 1 ? "enforce" : "audit",
    rule: rule?.id ?? `#${raw.ruleId}`,
    count: raw.count,
  };
  if (context.policy) event.policy = context.policy;
  if (type !== "net.ingress") {
    const path = context.cgroupPath?.(raw.cgroupId);
    event.process = {
      pid: raw.pid,
      ppid: raw.ppid,
      uid: raw.uid,
      gid: raw.gid,
      comm: raw.comm,
      cgroup: path === undefined ? { id: Number(raw.cgroupId) } : { id: Number(raw.cgroupId), path },
    };
  }
  if (type === "file.open" || type === "exec") {
    event.file = { dev: raw.dev, ino: Number(raw.ino), ...(rule?.path ? { path: rule.path } : {}) };
  } else {
    const family = raw.family === 6 ? "ipv6" : "ipv4";
    const net: NonNullable<AegisEvent["net"]> = {
      family,
      protocol: PROTOCOLS[raw.protocol] ?? String(raw.protocol),
    };
    const hasDestination = type !== "net.bind";
    if (hasDestination) {
      net.daddr = formatAddress(raw.daddr, family);
      net.dport = raw.dport;
    }
    if (type === "net.bind" || type === "net.ingress") {
      net.saddr = formatAddress(raw.saddr, family);
      net.sport = raw.sport;
    }
    const name = raw.ifindex ? context.interfaceName?.(raw.ifindex) : undefined;
    if (name) net.interface = name;
    event.net = net;
  }
  return event;
}

/** Dotted quad for IPv4 (first 4 bytes), RFC 5952 text for IPv6. */
export function formatAddress(bytes: Uint8Array, family: "ipv4" | "ipv6"): string {
  if (family === "ipv4") return [...bytes.subarray(0, 4)].join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // Longest run of two or more zero groups becomes "::".
  let bestStart = -1, bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/**
 * Drains the events ring buffer on the caller's thread: `poll()` hands every queued record to
 * `onEvent`; `start()` polls on a timer.
 */
export class EventStream {
  readonly #ring: RingBuffer;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(map: BpfMap, onEvent: (event: RawEvent) => void) {
    this.#ring = new RingBuffer(map, (record) => onEvent(decodeEvent(record)));
  }

  poll(): number {
    return this.#ring.consume();
  }

  /**
   * Polls every `intervalMs`. An error from a handler (or the ring) goes to `onError` and polling goes
   * on: one bad record must not stop the event stream, let alone the agent.
   */
  start(onError: (error: unknown) => void, intervalMs = 100): void {
    this.#timer ??= setInterval(() => {
      try {
        this.poll();
      } catch (error) {
        onError(error);
      }
    }, intervalMs);
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#ring.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
