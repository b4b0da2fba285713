/**
 * `policy suggest`: from recorded audit events (would-deny: `decision: audit`), the rules that would let
 * what ran keep running, as a candidate policy in YAML with one comment per rule (count, first and last
 * time, one example process). Pure: the caller reads the log and answers the host questions (which file
 * an inode is, whether a path exists) through `SuggestHost`.
 *
 * What it suggests, and only from what the events show:
 * - `exec` refused as untrusted (rule `exec.default`): an exec.allow `{ path }`, the path the line names or
 *   the file its name and inode resolve to on this host;
 * - `net.connect`, `net.sendmsg`, `net.packet` refused by `network.egress.default`: an egress allow by
 *   the host name the line carries (`hostName`: the kernel knew the address from that name), else by
 *   destination address (/32 or /128), with the port and protocol where the events agree on them, and `exe`
 *   where the line names the program and it exists here; the addresses a name was seen at go into the
 *   comment;
 * - `file.write` on a protected file: a files.writers `{ exe }` for the program the line names.
 * Everything else (a deny rule that matched, a bind, a line that cannot be resolved here) is listed in a
 * closing comment and in `notes`: no allow list lifts a deny rule, and no rule is made up for it.
 */
import { canonicalHost, hostProblem } from "./host_name.ts";
import { cidrProblem } from "./schema.ts";
import type { Policy } from "./schema.ts";
import { yaml } from "./yaml.ts";

/** What suggest asks of the host it runs on. */
export type SuggestHost = {
  /** The path of the file named `name` with this (dev, ino), when the line comes from this host. */
  resolveFile(name: string, dev: number, ino: number, host: string | undefined): string | undefined;
  /** The path of the program with this (dev, ino), when the line comes from this host. */
  resolveProgram(dev: number, ino: number, host: string | undefined): string | undefined;
  /** Whether `path` exists here (a rule naming a path that does not fails lint and apply). */
  exists(path: string): boolean;
};

export type SuggestOptions = {
  /** The policy to add to; absent: a new one. */
  base?: Policy;
  /** Only events at or after this time. */
  since?: Date;
  /** Addresses kept reachable when suggest turns the egress default to deny (lint's lock-out checks). */
  reachable?: { resolvers: readonly string[]; sshPeer?: string };
  /** Programs and libraries kept runnable when suggest turns exec.default to deny (lint's lock-out checks). */
  runnable?: readonly { path: string; why: string }[];
  /** Drops suggested rules this check flags (lint's duplicate, shadowed, no-effect, missing-path). */
  flagged?: (policy: Policy) => ReadonlySet<string>;
};

export type SuggestResult = {
  /** The candidate policy as YAML. */
  text: string;
  policy: Policy;
  /** Rules suggested, by list. */
  suggested: { exec: number; egress: number; writers: number };
  /** What the events showed that no rule was suggested for, one line each. */
  notes: string[];
  /** Lines read, and lines used. */
  lines: number;
  used: number;
};

type Seen = {
  count: bigint;
  first?: string;
  last?: string;
  example?: string | undefined;
  hostNames: Set<string>;
  /** For a rule by host name: the addresses the name was seen at (three at most). */
  addresses: Set<string>;
};

const TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const EGRESS_TYPES = new Set(["net.connect", "net.sendmsg", "net.packet"]);
const MAX_COUNT = 2n ** 53n;

type Record_ = Record<string, unknown>;

function isRecord(value: unknown): value is Record_ {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
const str = (value: unknown): string | undefined => typeof value === "string" ? value : undefined;
const int = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;

/** `text` as one comment-safe line: printable ASCII only, everything else escaped (\n, \u2028, ...). */
export function commentText(text: string): string {
  return text.replace(/[^\x20-\x5b\x5d-\x7e]/g, (c) => {
    if (c === "\\") return "\\\\";
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return [...c].map((unit) => {
      const code = unit.codePointAt(0)!;
      return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, "0")}`;
    }).join("");
  }).slice(0, 300);
}

/** `text` in double quotes, comment-safe. */
function quoted(text: string): string {
  return `"${commentText(text).replaceAll('"', '\\"')}"`;
}

function exampleOf(event: Record_): string {
  const process = isRecord(event.process) ? event.process : {};
  const exe = isRecord(process.exe) ? str(process.exe.path) : undefined;
  const parts = [
    `comm ${quoted(str(process.comm) ?? "?")}`,
    `pid ${int(process.pid) ?? "?"}`,
    `uid ${int(process.uid) ?? "?"}`,
    ...exe !== undefined ? [`exe ${commentText(exe)}`] : [],
  ];
  return parts.join(", ");
}

function note(seen: Map<string, Seen>, key: string, event: Record_, address?: string): void {
  const ts = str(event.ts);
  const stamp = ts !== undefined && TS.test(ts) ? ts : undefined;
  let entry = seen.get(key);
  if (!entry) seen.set(key, entry = { count: 0n, hostNames: new Set(), addresses: new Set() });
  if (address !== undefined && entry.addresses.size < 3) entry.addresses.add(address);
  const count = int(event.count);
  entry.count += BigInt(count !== undefined && count > 0 ? count : 1);
  if (entry.count > MAX_COUNT) entry.count = MAX_COUNT;
  if (stamp !== undefined && (entry.first === undefined || stamp < entry.first)) {
    entry.first = stamp;
    entry.example = exampleOf(event);
  }
  if (stamp !== undefined && (entry.last === undefined || stamp > entry.last)) entry.last = stamp;
  entry.example ??= exampleOf(event);
  const net = isRecord(event.net) ? event.net : {};
  const hostName = str(net.hostName) ?? str(event.hostName);
  if (hostName !== undefined && entry.hostNames.size < 3) entry.hostNames.add(commentText(hostName));
}

function commentOf(entry: Seen): string {
  const count = entry.count >= MAX_COUNT ? `${MAX_COUNT}+` : `${entry.count}`;
  const when = entry.first === undefined ? "time unknown" : `first ${entry.first}, last ${entry.last}`;
  const names = entry.hostNames.size ? `; seen as ${[...entry.hostNames].sort().join(", ")}` : "";
  const addresses = entry.addresses.size ? `; at ${[...entry.addresses].sort().join(", ")}` : "";
  return ` suggested: ${count} would-deny, ${when}; e.g. ${entry.example}${names}${addresses}`;
}

/** A destination: an address (/32 or /128), or the exact host name the kernel knew the address by. */
type EgressKey = { addr: string; prefix: number; host?: string; exe?: string };

/** Reads the log and returns the candidate policy. */
export function suggestPolicy(
  logText: string,
  host: SuggestHost,
  options: SuggestOptions = {},
): SuggestResult {
  const exec = new Map<string, Seen>();
  const writers = new Map<string, Seen>();
  // address (and exe) -> port or "*" -> protocols seen
  const egress = new Map<
    string,
    { key: EgressKey; ports: Map<string, Set<string>>; seen: Map<string, Seen> }
  >();
  const other = new Map<string, Seen>();
  const since = options.since?.toISOString();
  let lines = 0;
  let used = 0;
  for (const line of logText.split("\n")) {
    if (line.trim() === "") continue;
    lines++;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      continue;
    }
    if (!isRecord(event) || event.decision !== "audit" || event.summary === true) continue;
    const type = str(event.type);
    const rule = str(event.rule);
    if (type === undefined || rule === undefined) continue;
    const ts = str(event.ts);
    if (since !== undefined && !(ts !== undefined && TS.test(ts) && ts >= since)) continue;
    used++;
    const lineHost = str(event.host);
    const process = isRecord(event.process) ? event.process : {};
    const exeOf = (): string | undefined => {
      const exe = isRecord(process.exe) ? process.exe : undefined;
      if (!exe) return undefined;
      const path = str(exe.path);
      if (path !== undefined) return host.exists(path) && usablePath(path) ? path : undefined;
      const dev = int(exe.dev), ino = int(exe.ino);
      if (dev === undefined || ino === undefined) return undefined;
      const found = host.resolveProgram(dev, ino, lineHost);
      return found !== undefined && usablePath(found) ? found : undefined;
    };
    const aside = (why: string) => note(other, why, event as Record_);
    if (type === "exec" && rule === "exec.default") {
      const file = isRecord(event.file) ? event.file : {};
      let path = str(file.path);
      if (path !== undefined && !(usablePath(path) && host.exists(path))) path = undefined;
      const name = str(file.name), dev = int(file.dev), ino = int(file.ino);
      if (path === undefined && name !== undefined && dev !== undefined && ino !== undefined) {
        const found = host.resolveFile(name, dev, ino, lineHost);
        if (found !== undefined && usablePath(found)) path = found;
      }
      if (path === undefined) {
        aside(
          `exec of ${quoted(name ?? str(file.path) ?? "?")}: not found on this host ` +
            "by name and inode (another host, or the file is gone): find it with find / -xdev -inum INO",
        );
      } else note(exec, path, event);
    } else if (type !== undefined && EGRESS_TYPES.has(type) && rule === "network.egress.default") {
      const net = isRecord(event.net) ? event.net : {};
      const daddr = str(net.daddr);
      const prefix = daddr?.includes(":") ? 128 : 32;
      if (daddr === undefined || cidrProblem(`${daddr}/${prefix}`) !== undefined) {
        aside(`${type} with no usable destination address`);
        continue;
      }
      const exe = exeOf();
      const host = exactHost(str(net.hostName) ?? str(event.hostName));
      const key: EgressKey = {
        addr: daddr,
        prefix,
        ...host !== undefined && { host },
        ...exe !== undefined && { exe },
      };
      const id = `${host ?? `${daddr}/${prefix}`}\0${exe ?? ""}`;
      let group = egress.get(id);
      if (!group) egress.set(id, group = { key, ports: new Map(), seen: new Map() });
      const dport = int(net.dport);
      const port = dport !== undefined && dport >= 1 && dport <= 65535 ? String(dport) : "*";
      const protocol = str(net.protocol) ?? "?";
      let protocols = group.ports.get(port);
      if (!protocols) group.ports.set(port, protocols = new Set());
      protocols.add(protocol);
      note(group.seen, port, event, host !== undefined ? daddr : undefined);
    } else if (type === "file.write") {
      const exe = exeOf();
      if (exe === undefined) {
        aside(
          `file.write under rule ${quoted(rule)} by a program this log does not ` +
            "name (process.exe with a path, or an inode found here): add its files.writers entry by hand",
        );
      } else note(writers, exe, event);
    } else if (type === "net.bind") {
      aside(
        `net.bind refused by rule ${quoted(rule)}: there is no bind allow list; ` +
          "narrow that rule (exe: PATH) by hand",
      );
    } else {
      aside(
        `${commentText(type)} under rule ${quoted(rule)}: no allow list lifts it; ` +
          "change that rule by hand if what ran must keep running",
      );
    }
  }
  return build(options, { exec, writers, egress, other }, lines, used);
}

/** A path a rule may name (schema's absolute, clean path). */
function usablePath(path: string): boolean {
  if (!path.startsWith("/") || path.includes("\0") || path.length > 4096) return false;
  return path.split("/").every((part) => part !== "." && part !== "..");
}

type Gathered = {
  exec: Map<string, Seen>;
  writers: Map<string, Seen>;
  egress: Map<string, { key: EgressKey; ports: Map<string, Set<string>>; seen: Map<string, Seen> }>;
  other: Map<string, Seen>;
};

type Added = { path: (string | number)[]; comment: string };

function build(options: SuggestOptions, found: Gathered, lines: number, used: number): SuggestResult {
  const policy: Policy = options.base ? structuredClone(options.base) : {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "suggested", version: 1 },
    spec: { mode: "audit" },
  };
  const spec = policy.spec;
  let added: Added[] = [];
  const byPath = (a: string, b: string) => a < b ? -1 : a > b ? 1 : 0;

  if (found.exec.size > 0) {
    spec.exec ??= {};
    const madeDefault = spec.exec.default === undefined;
    spec.exec.default ??= "deny";
    const have = new Set((spec.exec.allow ?? []).map((rule) => rule.path));
    for (const path of [...found.exec.keys()].sort(byPath)) {
      if (have.has(path)) continue;
      have.add(path);
      const list = spec.exec.allow ??= [];
      added.push({ path: ["spec", "exec", "allow", list.length], comment: commentOf(found.exec.get(path)!) });
      list.push({ path });
    }
    if (madeDefault) {
      // What the host and aegisbpf need to run (lint's survival set) stays allowed.
      for (const { path, why } of [...options.runnable ?? []].sort((a, b) => byPath(a.path, b.path))) {
        if (have.has(path) || !usablePath(path)) continue;
        have.add(path);
        const list = spec.exec.allow ??= [];
        added.push({
          path: ["spec", "exec", "allow", list.length],
          comment: ` kept runnable: ${commentText(why)} (lint's lock-out check)`,
        });
        list.push({ path });
      }
    }
  }
  if (found.writers.size > 0) {
    spec.files ??= {};
    const have = new Set((spec.files.writers ?? []).map((rule) => rule.exe));
    for (const exe of [...found.writers.keys()].sort(byPath)) {
      if (have.has(exe)) continue;
      const list = spec.files.writers ??= [];
      added.push({
        path: ["spec", "files", "writers", list.length],
        comment: commentOf(found.writers.get(exe)!),
      });
      list.push({ exe });
    }
  }
  if (found.egress.size > 0) {
    spec.network ??= {};
    const egress = spec.network.egress ??= {};
    const madeDefault = egress.default === undefined;
    egress.default ??= "deny";
    const list = egress.allow ??= [];
    const groups = [...found.egress.values()].sort((a, b) =>
      byPath(a.key.host ?? a.key.addr, b.key.host ?? b.key.addr) || byPath(a.key.exe ?? "", b.key.exe ?? "")
    );
    for (const { key, ports, seen } of groups) {
      const destination = key.host !== undefined ? { host: key.host } : { cidr: `${key.addr}/${key.prefix}` };
      const exe = key.exe === undefined ? {} : { exe: key.exe };
      if (ports.has("*")) {
        // A destination used without a port (or with one the events do not give): the whole address.
        const all = mergeSeen([...seen.values()]);
        added.push({ path: ["spec", "network", "egress", "allow", list.length], comment: commentOf(all) });
        list.push({ ...destination, ...exe });
        continue;
      }
      for (const port of [...ports.keys()].sort((a, b) => Number(a) - Number(b))) {
        const protocols = ports.get(port)!;
        const only = protocols.size === 1 ? [...protocols][0] : undefined;
        const protocol = only === "tcp" || only === "udp" ? { protocol: only as "tcp" | "udp" } : {};
        added.push({
          path: ["spec", "network", "egress", "allow", list.length],
          comment: commentOf(seen.get(port)!),
        });
        list.push({ ...destination, port: Number(port), ...protocol, ...exe });
      }
    }
    if (madeDefault && options.reachable) keepReachable(list, added, options.reachable);
  }
  // What lint would flag among the suggested rules (a repeat of a rule of the base, one shadowed) is dropped.
  if (options.flagged) {
    const flagged = options.flagged(policy);
    const drop = added.filter((entry) => flagged.has(ruleIdOf(entry.path)));
    if (drop.length > 0) {
      for (const entry of [...drop].reverse()) {
        const list = listAt(policy, entry.path);
        list.splice(entry.path.at(-1) as number, 1);
      }
      added = renumber(added, drop);
    }
  }
  // A changed policy gets a new version (apply's history and signed bundles go by it).
  if (options.base && added.length > 0) policy.metadata.version = options.base.metadata.version + 1;
  const notes = [...found.other.entries()].sort(([a], [b]) => byPath(a, b)).map(([why, entry]) =>
    `${why} (${commentOf(entry).replace(/^ suggested: /, "")})`
  );
  const count = (list: string) => added.filter((entry) => entry.path.join(".").includes(list)).length;
  return {
    text: render(policy, added, notes),
    policy,
    suggested: { exec: count("exec.allow"), egress: count("egress.allow"), writers: count("files.writers") },
    notes,
    lines,
    used,
  };
}

function mergeSeen(all: Seen[]): Seen {
  const merged: Seen = { count: 0n, hostNames: new Set(), addresses: new Set() };
  for (const entry of all) {
    merged.count += entry.count;
    if (entry.first !== undefined && (merged.first === undefined || entry.first < merged.first)) {
      merged.first = entry.first;
      merged.example = entry.example;
    }
    if (entry.last !== undefined && (merged.last === undefined || entry.last > merged.last)) {
      merged.last = entry.last;
    }
    merged.example ??= entry.example;
    for (const name of entry.hostNames) if (merged.hostNames.size < 3) merged.hostNames.add(name);
    for (const address of entry.addresses) if (merged.addresses.size < 3) merged.addresses.add(address);
  }
  if (merged.count > MAX_COUNT) merged.count = MAX_COUNT;
  return merged;
}

/** With an egress default of deny that suggest turned on: DNS to the resolvers and the SSH peer stay open. */
function keepReachable(
  list: NonNullable<NonNullable<NonNullable<Policy["spec"]["network"]>["egress"]>["allow"]>,
  added: Added[],
  reachable: NonNullable<SuggestOptions["reachable"]>,
): void {
  const keep = (cidr: string, port: number | undefined, why: string) => {
    if (cidrProblem(cidr) !== undefined) return;
    if (list.some((rule) => rule.cidr === cidr && rule.port === port && rule.exe === undefined)) return;
    added.push({
      path: ["spec", "network", "egress", "allow", list.length],
      comment: ` kept reachable: ${why}`,
    });
    list.push(port === undefined ? { cidr } : { cidr, port });
  };
  const host = (addr: string) => `${addr}/${addr.includes(":") ? 128 : 32}`;
  for (const resolver of [...reachable.resolvers].sort()) {
    keep(host(resolver), 53, `a resolver in /etc/resolv.conf (lint's lock-out check)`);
  }
  if (reachable.sshPeer !== undefined) {
    keep(host(reachable.sshPeer), undefined, "your SSH session's peer (lint's lock-out check)");
  }
}

function ruleIdOf(path: (string | number)[]): string {
  return `${path.slice(1, -1).join(".")}[${path.at(-1)}]`;
}

function listAt(policy: Policy, path: (string | number)[]): unknown[] {
  let node: unknown = policy;
  for (const key of path.slice(0, -1)) node = (node as Record<string | number, unknown>)[key];
  return node as unknown[];
}

/** The added entries without `drop`, their indexes moved down past the dropped ones of the same list. */
function renumber(added: Added[], drop: Added[]): Added[] {
  const dropped = new Set(drop);
  return added.filter((entry) => !dropped.has(entry)).map((entry) => {
    const list = entry.path.slice(0, -1).join(".");
    const index = entry.path.at(-1) as number;
    const before = drop.filter((d) =>
      d.path.slice(0, -1).join(".") === list && (d.path.at(-1) as number) < index
    )
      .length;
    return { ...entry, path: [...entry.path.slice(0, -1), index - before] };
  });
}

function render(policy: Policy, added: Added[], notes: string[]): string {
  const { Document } = yaml();
  const doc = new Document(policy);
  doc.commentBefore =
    " A candidate policy from `aegisbpf policy suggest`: review every suggested rule, then " +
    "`aegisbpf policy simulate`\n it against the log before you apply it (audit first).";
  for (const entry of added) {
    const node = doc.getIn(entry.path, true) as { commentBefore?: string | null } | undefined;
    if (node) node.commentBefore = entry.comment;
  }
  if (notes.length > 0) {
    doc.comment = [
      " Not suggested (no rule would let these run without changing a rule by hand):",
      ...notes.map(
        (line) => ` - ${line}`,
      ),
    ].join("\n");
  }
  return doc.toString({ lineWidth: 0 });
}

/** `name` when it is an exact host name an egress rule can carry (no pattern), in canonical form. */
function exactHost(name: string | undefined): string | undefined {
  if (name === undefined || name.includes("*") || hostProblem(name) !== undefined) return undefined;
  return canonicalHost(name);
}
