/**
 * Kernel events written straight from the record as JSON line bytes: the same bytes, byte for byte, as
 * `jsonText(formatEvent(raw, context))` and a newline (event_json_test.ts proves it over random records),
 * with no event object, no JSON.stringify, no escape pass over the line and no TextEncoder. Constant runs
 * (keys, punctuation, the type, the decision) are copied as pre-encoded bytes, integers written as digits,
 * and strings (comm, rule ids and paths, cgroup paths, interface names) copied as they are when they are
 * printable ASCII with nothing to escape; any other string goes through jsonText, so its escaping is the
 * one serializer's. A record this writer does not cover (net.socket, scope.escape, process.ptrace) or whose
 * values are unknown is left to formatEvent: `write` returns false and writes nothing.
 */

import {
  type AddressWords,
  DECISION,
  EVENT,
  EXEC_REASON,
  FAMILY,
  HOOK,
  MODE,
  type RawEvent,
} from "../../ffi/mod.ts";
import {
  bootWallTime,
  EVENT_TYPES,
  type EventContext,
  EXEC_REASONS,
  execFileName,
  FILE_CHANGE_OPS,
  FILE_WRITE_OPS,
  formatAddressWords,
  KNOWN_FLAGS,
  NETWORK_HOOKS,
  PACKET_HOOKS,
  PROTOCOLS,
  rfc3339Seconds,
  SIGNAL_NAMES,
} from "../kernel/events.ts";
import { jsonText } from "../text/printable.ts";

const encoder = new TextEncoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);

/** A line of bytes built in one buffer that grows and is reused line after line. */
export class ByteLine {
  buffer = new Uint8Array(1024);
  length = 0;

  /** Room for `size` more bytes. */
  reserve(size: number): void {
    if (this.length + size <= this.buffer.length) return;
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + size));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  bytes(run: Uint8Array): void {
    const size = run.length;
    this.reserve(size);
    // A short run byte by byte: `set` costs a call into the runtime that a few dozen bytes do not repay.
    if (size > 64) this.buffer.set(run, this.length);
    else {
      const buffer = this.buffer;
      for (let i = 0, at = this.length; i < size; i++) buffer[at + i] = run[i]!;
    }
    this.length += size;
  }

  /** Text known to be ASCII with nothing to escape (digits, a timestamp, an address). */
  ascii(text: string): void {
    this.reserve(text.length);
    const buffer = this.buffer;
    let at = this.length;
    for (let i = 0; i < text.length; i++) buffer[at++] = text.charCodeAt(i);
    this.length = at;
  }

  /** A number as JSON writes it: whole numbers below 2^31 digit by digit, any other as String does. */
  number(value: number): void {
    if (!(value >= 0 && value < 0x8000_0000 && (value | 0) === value)) return this.ascii(String(value));
    this.reserve(10);
    const buffer = this.buffer;
    let digits = 1;
    for (let rest = value; rest >= 10; rest = (rest / 10) | 0) digits++;
    let at = this.length + digits;
    this.length = at;
    let rest = value;
    do {
      const next = (rest / 10) | 0;
      buffer[--at] = 0x30 + rest - next * 10;
      rest = next;
    } while (rest > 0);
  }

  /** Nine digits of a whole number below 10^9, zeros in front. */
  nanos(value: number): void {
    this.reserve(9);
    const buffer = this.buffer;
    let rest = value;
    for (let at = this.length + 8; at >= this.length; at--) {
      const next = (rest / 10) | 0;
      buffer[at] = 0x30 + rest - next * 10;
      rest = next;
    }
    this.length += 9;
  }

  /** A dotted quad of an IPv4 address word, as formatAddressWords writes it. */
  ipv4(word: number): void {
    this.number(word >>> 24);
    this.reserve(1);
    this.buffer[this.length++] = 0x2e;
    this.number((word >>> 16) & 0xff);
    this.reserve(1);
    this.buffer[this.length++] = 0x2e;
    this.number((word >>> 8) & 0xff);
    this.reserve(1);
    this.buffer[this.length++] = 0x2e;
    this.number(word & 0xff);
  }

  /** A JSON string of `text`, escaped as jsonText escapes it. */
  string(text: string): void {
    this.reserve(text.length + 2);
    const buffer = this.buffer;
    const start = this.length;
    let at = start;
    buffer[at++] = 0x22;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      // Printable ASCII but the quote and the backslash: the same in JSON text and in UTF-8.
      if (code < 0x20 || code > 0x7e || code === 0x22 || code === 0x5c) {
        this.length = start;
        return this.bytes(bytesOf(jsonText(text)));
      }
      buffer[at++] = code;
    }
    buffer[at++] = 0x22;
    this.length = at;
  }

  /** The line so far; valid until the buffer is written again. */
  view(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

const TS = bytesOf(`{"ts":"`);
/** `Z","host":H,"type":"T","decision":"D","mode":"M","rule":` of host H, by hook, decision and mode. */
function heads(host: Uint8Array): Uint8Array[] {
  const all: Uint8Array[] = [];
  for (let hook = 0; hook < HOOK.COUNT; hook++) {
    for (const decision of ["deny", "audit"]) {
      for (const mode of ["enforce", "audit"]) {
        const type = `,"type":"${EVENT_TYPES[hook]}","decision":"${decision}","mode":"${mode}","rule":`;
        all.push(new Uint8Array([...bytesOf(`Z","host":`), ...host, ...bytesOf(type)]));
      }
    }
  }
  return all;
}
const UNRESOLVED_GENERATION = bytesOf(`,"unresolved":"generation"`);
const UNRESOLVED_RULE = bytesOf(`,"unresolved":"rule"`);
const PROCESS_PID = bytesOf(`,"process":{"pid":`);
const PPID = bytesOf(`,"ppid":`);
const UID = bytesOf(`,"uid":`);
const GID = bytesOf(`,"gid":`);
const COMM = bytesOf(`,"comm":`);
const CGROUP_ID = bytesOf(`,"cgroup":{"id":`);
const PATH = bytesOf(`,"path":`);
const CLOSE = bytesOf(`}`);
const CLOSE2 = bytesOf(`}}`);
const EXE_DEV = bytesOf(`},"exe":{"dev":`);
const SUBJECT = bytesOf(`,"subject":`);
const HOST_NAME = bytesOf(`,"hostName":`);
const TAGS = bytesOf(`,"tags":[`);
const COMMA = bytesOf(",");
const BRACKET_CLOSE = bytesOf("]");
const FILE = bytesOf(`,"file":{`);
const FILE_PATH = bytesOf(`"path":`);
const DEV_AFTER_PATH = bytesOf(`,"dev":`);
const DEV = bytesOf(`"dev":`);
const INO = bytesOf(`,"ino":`);
const opBytes = (ops: Readonly<Record<number, string>>): Readonly<Record<number, Uint8Array>> =>
  Object.fromEntries(Object.entries(ops).map(([number, op]) => [number, bytesOf(`,"op":"${op}"`)]));
/** The `op` field of file.change and file.write events, by hook. */
const OPS: Readonly<Record<number, Readonly<Record<number, Uint8Array>>>> = {
  [HOOK.FILE_CHANGE]: opBytes(FILE_CHANGE_OPS),
  [HOOK.FILE_WRITE]: opBytes(FILE_WRITE_OPS),
};
const REASONS: Readonly<Record<number, Uint8Array>> = Object.fromEntries(
  Object.entries(EXEC_REASONS).map(([number, reason]) => [number, bytesOf(`,"reason":"${reason}"`)]),
);
const NAME = bytesOf(`"name":`);
const NAME_AFTER_PATH = bytesOf(`,"name":`);
const NET: Readonly<Record<number, Uint8Array>> = {
  [FAMILY.IPV4]: bytesOf(`,"net":{"family":"ipv4","protocol":`),
  [FAMILY.IPV6]: bytesOf(`,"net":{"family":"ipv6","protocol":`),
};
const DADDR = bytesOf(`,"daddr":"`);
const DPORT = bytesOf(`","dport":`);
const SADDR_AFTER_PORT = bytesOf(`,"saddr":"`);
const SADDR_AFTER_ADDRESS = bytesOf(`","saddr":"`);
const SPORT = bytesOf(`","sport":`);
const QUOTE = bytesOf(`"`);
const INTERFACE = bytesOf(`,"interface":`);
const RTHDR = bytesOf(`,"route":"rthdr"`);
const SRCROUTE = bytesOf(`,"route":"srcroute"`);
const IN_INTERFACE = bytesOf(`,"inInterface":`);
const SIGNALS: Readonly<Record<number, Uint8Array>> = Object.fromEntries(
  Object.entries(SIGNAL_NAMES).map((
    [number, name],
  ) => [number, bytesOf(`,"signal":{"name":"${name}","by":"kernel"}`)]),
);
const EXCEPTION = bytesOf(`,"exception":`);
const COUNT = bytesOf(`,"count":`);
const SUMMARY_END = bytesOf(`,"summary":true}\n`);
const END = bytesOf(`}\n`);
const PROTOCOL_TEXT: Uint8Array[] = Array.from(
  { length: 256 },
  (_, number) => bytesOf(JSON.stringify(PROTOCOLS[number] ?? String(number))),
);

const NETWORK: readonly boolean[] = flags(NETWORK_HOOKS);
const PACKET: readonly boolean[] = flags(PACKET_HOOKS);
/**
 * Hooks this writer covers: all but net.socket, scope.escape, process.ptrace and process.identity
 * (formatEvent writes those).
 */
const NOT_COVERED: ReadonlySet<number> = new Set([HOOK.SOCKET, HOOK.SCOPE, HOOK.PTRACE, HOOK.IDENTITY]);
const COVERED: readonly boolean[] = Array.from({ length: HOOK.COUNT }, (_, hook) => !NOT_COVERED.has(hook));

function flags(hooks: ReadonlySet<number>): boolean[] {
  const table = new Array<boolean>(HOOK.COUNT).fill(false);
  for (const hook of hooks) table[hook] = true;
  return table;
}

/** Writes kernel events of one context as JSON lines. */
export class EventJsonWriter {
  readonly #context: EventContext;
  readonly line = new ByteLine();
  #hostKey: string | undefined;
  #heads: Uint8Array[] = [];
  /** Unix seconds of the last timestamp, and `{"ts":"YYYY-MM-DDTHH:MM:SS.` of them. */
  #secondsKey = -1;
  #seconds = new Uint8Array(0);
  /** `,"policy":{...}` of each policy object seen (the agent makes a new one per apply, never changes one). */
  readonly #policies = new WeakMap<object, Uint8Array>();

  constructor(context: EventContext) {
    this.#context = context;
  }

  /**
   * The JSON line of `raw` with its newline, in `this.line` (from offset 0); false, and nothing written,
   * when formatEvent must make it (a hook not covered here, or a value formatEvent refuses).
   */
  write(raw: RawEvent): boolean {
    const hook = raw.hook;
    if (!(hook < HOOK.COUNT) || !COVERED[hook]) return false;
    const decision = raw.decision === DECISION.DENY ? 0 : raw.decision === DECISION.AUDIT ? 1 : -1;
    const mode = raw.mode === MODE.ENFORCE ? 0 : raw.mode === MODE.AUDIT ? 1 : -1;
    if (decision < 0 || mode < 0 || (raw.gen !== 0 && raw.gen !== 1) || (raw.flags & ~KNOWN_FLAGS) !== 0) {
      return false;
    }
    if (raw.signal !== 0 && SIGNALS[raw.signal] === undefined) return false;
    const summary = (raw.flags & EVENT.SUMMARY) !== 0;
    const network = NETWORK[hook]!;
    if (!summary) {
      if (network && raw.family !== FAMILY.IPV4 && raw.family !== FAMILY.IPV6) return false;
      if (OPS[hook] !== undefined && OPS[hook][raw.op] === undefined) return false;
      if (hook === HOOK.EXEC && REASONS[raw.op] === undefined) return false;
    }
    const context = this.#context;
    const table = context.generations[raw.gen];
    const rule = table?.rules.get(raw.ruleId);
    const line = this.line;
    line.length = 0;
    const time = bootWallTime(raw.tsHi, raw.tsLo, context.bootToWallNs);
    if (time.seconds !== this.#secondsKey) {
      this.#secondsKey = time.seconds;
      this.#seconds = new Uint8Array([...TS, ...bytesOf(rfc3339Seconds(time.seconds))]);
    }
    line.bytes(this.#seconds);
    line.nanos(time.nanos);
    if (context.host !== this.#hostKey) {
      this.#hostKey = context.host;
      this.#heads = heads(bytesOf(jsonText(context.host)));
    }
    line.bytes(this.#heads[hook * 4 + decision * 2 + mode]!);
    if (rule === undefined) {
      line.ascii(`"#${raw.ruleId}"`);
      line.bytes(table === undefined ? UNRESOLVED_GENERATION : UNRESOLVED_RULE);
    } else {
      line.string(rule.id);
    }
    if (table?.policy) line.bytes(this.#policyBytes(table.policy));
    if (rule?.exe !== undefined) {
      line.bytes(SUBJECT);
      line.string(rule.exe);
    }
    if (rule?.host !== undefined) {
      line.bytes(HOST_NAME);
      line.string(rule.host);
    }
    if (rule?.tags !== undefined) {
      line.bytes(TAGS);
      rule.tags.forEach((tag, index) => {
        if (index > 0) line.bytes(COMMA);
        line.string(tag);
      });
      line.bytes(BRACKET_CLOSE);
    }
    if (summary) {
      if (!PACKET[hook]) {
        line.bytes(PROCESS_PID);
        line.number(raw.pid);
        line.bytes(CLOSE);
      }
    } else {
      if (!PACKET[hook]) this.#process(raw, network);
      if (network) this.#net(raw, hook);
      else {
        const path = rule?.path;
        // An allowlist refusal: the file's name, which no rule's path gives.
        const name = hook === HOOK.EXEC && raw.op !== EXEC_REASON.DENIED ? execFileName(raw) : undefined;
        line.bytes(FILE);
        if (path) {
          line.bytes(FILE_PATH);
          line.string(path);
        }
        if (name !== undefined) {
          line.bytes(path ? NAME_AFTER_PATH : NAME);
          line.string(name);
        }
        line.bytes(path || name !== undefined ? DEV_AFTER_PATH : DEV);
        line.number(raw.dev);
        line.bytes(INO);
        line.number(raw.inoHi * 2 ** 32 + raw.inoLo);
        line.bytes(CLOSE);
        const ops = OPS[hook];
        if (ops !== undefined) line.bytes(ops[raw.op]!);
        if (hook === HOOK.EXEC) line.bytes(REASONS[raw.op]!);
      }
    }
    if (raw.signal !== 0) line.bytes(SIGNALS[raw.signal]!);
    if (raw.exception !== 0) {
      line.bytes(EXCEPTION);
      line.number(raw.exception);
    }
    line.bytes(COUNT);
    line.number(raw.count);
    line.bytes(summary ? SUMMARY_END : END);
    return true;
  }

  #process(raw: RawEvent, network: boolean): void {
    const line = this.line;
    line.bytes(PROCESS_PID);
    line.number(raw.pid);
    line.bytes(PPID);
    line.number(raw.ppid);
    line.bytes(UID);
    line.number(raw.uid);
    line.bytes(GID);
    line.number(raw.gid);
    line.bytes(COMM);
    line.string(raw.comm);
    line.bytes(CGROUP_ID);
    const id = raw.cgroupIdHi * 2 ** 32 + raw.cgroupIdLo;
    line.number(id);
    const path = this.#context.cgroupPath?.(id);
    if (path !== undefined) {
      line.bytes(PATH);
      line.string(path);
    }
    if (network && (raw.flags & EVENT.EXE) !== 0) {
      line.bytes(EXE_DEV);
      line.number(raw.dev);
      line.bytes(INO);
      line.number(raw.inoHi * 2 ** 32 + raw.inoLo);
    }
    line.bytes(CLOSE2);
  }

  /** As netOf in lib/kernel/events.ts, for IPv4 and IPv6 (net.socket is not covered). */
  #net(raw: RawEvent, hook: number): void {
    const line = this.line;
    const family = raw.family === FAMILY.IPV6 ? "ipv6" : "ipv4";
    line.bytes(NET[raw.family === FAMILY.IPV6 ? FAMILY.IPV6 : FAMILY.IPV4]!);
    line.bytes(PROTOCOL_TEXT[raw.protocol]!);
    let open = false;
    if (hook === HOOK.ROUTE) {
      line.bytes(DADDR);
      this.#address(raw.daddrWords, family);
      open = true;
    } else if (hook !== HOOK.BIND) {
      line.bytes(DADDR);
      this.#address(raw.daddrWords, family);
      line.bytes(DPORT);
      line.number(raw.dport);
    }
    if (hook === HOOK.BIND || hook === HOOK.INGRESS || hook === HOOK.FORWARD) {
      line.bytes(open ? SADDR_AFTER_ADDRESS : SADDR_AFTER_PORT);
      this.#address(raw.saddrWords, family);
      line.bytes(SPORT);
      line.number(raw.sport);
    } else if (open) {
      line.bytes(QUOTE);
    }
    const name = raw.ifindex ? this.#context.interfaceName?.(raw.ifindex) : undefined;
    if (name) {
      line.bytes(INTERFACE);
      line.string(name);
    }
    if (raw.flags & EVENT.RTHDR) line.bytes(RTHDR);
    else if (raw.flags & EVENT.SRCROUTE) line.bytes(SRCROUTE);
    const inName = hook === HOOK.FORWARD && raw.dev ? this.#context.interfaceName?.(raw.dev) : undefined;
    if (inName) {
      line.bytes(IN_INTERFACE);
      line.string(inName);
    }
    line.bytes(CLOSE);
  }

  #address(words: AddressWords, family: "ipv4" | "ipv6"): void {
    if (family === "ipv4") this.line.ipv4(words[0]);
    else this.line.ascii(formatAddressWords(words, family));
  }

  #policyBytes(policy: object): Uint8Array {
    let bytes = this.#policies.get(policy);
    if (bytes === undefined) {
      bytes = bytesOf(`,"policy":${jsonText(policy)}`);
      this.#policies.set(policy, bytes);
    }
    return bytes;
  }
}
