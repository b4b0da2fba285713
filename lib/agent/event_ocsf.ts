/**
 * Events as OCSF 1.3.0 objects (`run --log-format ocsf`, `events --ocsf`): every event type has one class,
 * kernel decisions the activity class of what was tried (File System Activity 1001, Process Activity 1007,
 * Network Activity 4001) with the decision as `action_id`/`disposition_id`, the agent's own events
 * Application Lifecycle 6002, or Detection Finding 2004 where something needs a person (tampering, an
 * expired deadman, lost events). What OCSF has no attribute for (the rule, its tags, the policy, the mode,
 * the count) is under `unmapped`. docs/events.md has the table; docs/schema/ocsf-classes.json the required
 * attributes a test checks every type against. Pure: the event in, an object out, written as JSON only.
 */

import type { AegisEvent, KernelEventType } from "../kernel/events.ts";
import { VERSION } from "../version.ts";
import type { AgentEvent, AgentEventType, AnyEvent } from "./agent_events.ts";

export const OCSF_VERSION = "1.3.0";

type Ocsf = Record<string, unknown>;
type Category = { uid: number; name: string };
type OcsfClass = {
  uid: number;
  name: string;
  category: Category;
  activities: Readonly<Record<number, string>>;
};

const SYSTEM: Category = { uid: 1, name: "System Activity" };
const FILE_ACTIVITY: OcsfClass = {
  uid: 1001,
  name: "File System Activity",
  category: SYSTEM,
  activities: {
    1: "Create",
    3: "Update",
    4: "Delete",
    5: "Rename",
    6: "Set Attributes",
    7: "Set Security",
    12: "Mount",
    14: "Open",
    99: "Other",
  },
};
const PROCESS_ACTIVITY: OcsfClass = {
  uid: 1007,
  name: "Process Activity",
  category: SYSTEM,
  activities: { 1: "Launch", 3: "Open", 4: "Inject", 99: "Other" },
};
const NETWORK_ACTIVITY: OcsfClass = {
  uid: 4001,
  name: "Network Activity",
  category: { uid: 4, name: "Network Activity" },
  activities: { 1: "Open", 5: "Refuse", 6: "Traffic", 7: "Listen", 99: "Other" },
};
const DETECTION_FINDING: OcsfClass = {
  uid: 2004,
  name: "Detection Finding",
  category: { uid: 2, name: "Findings" },
  activities: { 1: "Create" },
};
const APPLICATION_LIFECYCLE: OcsfClass = {
  uid: 6002,
  name: "Application Lifecycle",
  category: { uid: 6, name: "Application Activity" },
  activities: { 3: "Start", 4: "Stop", 6: "Enable", 7: "Disable", 8: "Update", 99: "Other" },
};

/** File System Activity's activity by the event's `op` (file.change, file.write). */
const FILE_OP_ACTIVITY: Readonly<Record<string, number>> = {
  "open-write": 3,
  truncate: 3,
  unlink: 4,
  rename: 5,
  link: 1,
  create: 1,
  chmod: 7,
  chown: 7,
  utimes: 6,
  setattr: 6,
  setxattr: 6,
  removexattr: 6,
  mount: 12,
};
/** Process Activity's activity by what a tracer tried: reading or opening is Open, writing memory Inject. */
const PTRACE_ACTIVITY: Readonly<Record<string, number>> = {
  attach: 3,
  traceme: 3,
  vm_readv: 3,
  vm_writev: 4,
  proc_open: 3,
  pidfd_getfd: 3,
};

type KernelMapping = { class: OcsfClass; activity: (event: AegisEvent) => number };
const refusedOr = (allowed: number) => (event: AegisEvent) => event.decision === "deny" ? 5 : allowed;

/** The class and activity of each kernel event type: a Record, so a new type does not compile unmapped. */
export const KERNEL_OCSF: Readonly<Record<KernelEventType, KernelMapping>> = {
  "file.open": { class: FILE_ACTIVITY, activity: () => 14 },
  "exec": { class: PROCESS_ACTIVITY, activity: () => 1 },
  "net.connect": { class: NETWORK_ACTIVITY, activity: refusedOr(1) },
  "net.sendmsg": { class: NETWORK_ACTIVITY, activity: refusedOr(6) },
  "net.bind": { class: NETWORK_ACTIVITY, activity: () => 7 },
  "net.ingress": { class: NETWORK_ACTIVITY, activity: refusedOr(6) },
  "scope.escape": { class: PROCESS_ACTIVITY, activity: () => 99 },
  "net.packet": { class: NETWORK_ACTIVITY, activity: refusedOr(6) },
  "net.socket": { class: NETWORK_ACTIVITY, activity: refusedOr(1) },
  "process.ptrace": { class: PROCESS_ACTIVITY, activity: (e) => PTRACE_ACTIVITY[e.ptrace?.op ?? ""] ?? 99 },
  "file.change": { class: FILE_ACTIVITY, activity: (e) => FILE_OP_ACTIVITY[e.op ?? ""] ?? 99 },
  "net.route": { class: NETWORK_ACTIVITY, activity: refusedOr(6) },
  "net.forward": { class: NETWORK_ACTIVITY, activity: refusedOr(6) },
  "file.write": { class: FILE_ACTIVITY, activity: (e) => FILE_OP_ACTIVITY[e.op ?? ""] ?? 99 },
  "process.identity": { class: PROCESS_ACTIVITY, activity: () => 99 },
};

type AgentMapping = { class: OcsfClass; activity: number; severity: number; title: string };
const lifecycle = (activity: number, title: string, severity = 1): AgentMapping => ({
  class: APPLICATION_LIFECYCLE,
  activity,
  severity,
  title,
});
const finding = (title: string, severity: number): AgentMapping => ({
  class: DETECTION_FINDING,
  activity: 1,
  severity,
  title,
});

/** The class of each agent event type: lifecycle for what an operator did, a finding for what needs one. */
export const AGENT_OCSF: Readonly<Record<AgentEventType, AgentMapping>> = {
  "agent.start": lifecycle(3, "agent started"),
  "agent.stop": lifecycle(4, "agent stopped"),
  "policy.applied": lifecycle(8, "policy applied"),
  "policy.rolled_back": lifecycle(8, "policy rolled back"),
  "policy.refreshed": lifecycle(8, "rules resolved again"),
  "policy.reload_failed": lifecycle(99, "policy reload failed: the old policy stays", 3),
  "policy.check_failed": finding("a policy's self-check failed: the policy before it was put back", 4),
  "rule.unresolved": lifecycle(99, "a rule's path no longer resolves", 3),
  "break_glass.on": lifecycle(7, "break-glass on: enforcement off", 4),
  "break_glass.off": lifecycle(6, "break-glass off: enforcement back"),
  "deadman.expired": finding("deadman expired: the hooks fell back to audit", 4),
  "events.dropped": finding("events were lost", 3),
  "tamper.detected": finding("aegisbpf state changed behind the agent's back and put back", 4),
  "agent.error": lifecycle(99, "agent error", 3),
};

const SEVERITIES: Readonly<Record<number, string>> = {
  1: "Informational",
  2: "Low",
  3: "Medium",
  4: "High",
};

/** The OCSF object of an event; undefined for a type this version does not know (a newer agent's log). */
export function ocsfEvent(event: AnyEvent | Record<string, unknown>): Ocsf | undefined {
  const type = event.type as string;
  if (Object.hasOwn(KERNEL_OCSF, type) && "decision" in event) return kernelOcsf(event as AegisEvent);
  if (Object.hasOwn(AGENT_OCSF, type) && !("decision" in event)) return agentOcsf(event as AgentEvent);
  return undefined;
}

function header(event: AnyEvent, ocsfClass: OcsfClass, activity: number, severity: number): Ocsf {
  return {
    class_uid: ocsfClass.uid,
    class_name: ocsfClass.name,
    category_uid: ocsfClass.category.uid,
    category_name: ocsfClass.category.name,
    activity_id: activity,
    activity_name: ocsfClass.activities[activity] ?? "Other",
    type_uid: ocsfClass.uid * 100 + activity,
    type_name: `${ocsfClass.name}: ${ocsfClass.activities[activity] ?? "Other"}`,
    severity_id: severity,
    severity: SEVERITIES[severity] ?? "Unknown",
    time: timeMs(event.ts),
    time_dt: event.ts,
    metadata: {
      version: OCSF_VERSION,
      product: { name: "aegisbpf", vendor_name: "aegisbpf", version: VERSION },
      event_code: event.type,
      ...(event.policy && { labels: [`policy:${event.policy.name}`] }),
    },
    device: { hostname: event.host, type_id: 0, type: "Unknown", os: { name: "Linux", type_id: 200 } },
  };
}

/** Milliseconds since the epoch of an RFC 3339 time (nanoseconds cut to milliseconds). */
function timeMs(ts: string): number {
  const ms = Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(ms) ? 0 : ms;
}

function kernelOcsf(event: AegisEvent): Ocsf {
  const mapping = KERNEL_OCSF[event.type];
  const activity = mapping.activity(event);
  const denied = event.decision === "deny";
  const ocsf = header(event, mapping.class, activity, denied ? 3 : 2);
  Object.assign(ocsf, {
    message: `${denied ? "denied" : "would be denied (audit)"}: ${event.type} by rule ${event.rule}`,
    status_id: denied ? 2 : 1,
    status: denied ? "Failure" : "Success",
    // Audit lets the call through and reports it: Observed and Detected, "would have been blocked".
    action_id: denied ? 2 : 3,
    action: denied ? "Denied" : "Observed",
    disposition_id: denied ? 2 : 15,
    disposition: denied ? "Blocked" : "Detected",
  });
  const actor = actorOf(event);
  if (actor) ocsf.actor = actor;
  const attacks = (event.tags ?? []).filter((tag) => /^T\d{4}(\.\d{3})?$/.test(tag));
  if (attacks.length > 0) {
    ocsf.attacks = attacks.map((uid) => ({ technique: { uid }, version: "MITRE ATT&CK" }));
  }
  if (mapping.class === FILE_ACTIVITY) ocsf.file = fileOf(event);
  else if (mapping.class === PROCESS_ACTIVITY) ocsf.process = processOf(event);
  else Object.assign(ocsf, networkOf(event));
  ocsf.observables = observablesOf(ocsf);
  ocsf.unmapped = unmappedOf(event);
  return ocsf;
}

type Fields = Record<string, unknown>;

/** The task that acted: the actor of every kernel event but a packet's (net.ingress, net.forward). */
function actorOf(event: AegisEvent): Ocsf | undefined {
  const task = event.process as Fields | undefined;
  if (task === undefined) return undefined;
  return { process: processObject(task) };
}

function processObject(task: Fields): Ocsf {
  const process: Ocsf = { pid: task.pid };
  if (typeof task.comm === "string") process.name = task.comm;
  if (typeof task.ppid === "number") process.parent_process = { pid: task.ppid };
  if (typeof task.uid === "number") process.user = { uid: String(task.uid) };
  if (typeof task.gid === "number") process.group = { uid: String(task.gid) };
  const exe = task.exe as { dev: number; ino: number; path?: string } | undefined;
  if (exe) process.file = fileObject(exe.path, undefined, exe.dev, exe.ino);
  return process;
}

function fileObject(path: string | undefined, name: string | undefined, dev: number, ino: number): Ocsf {
  const base = path === undefined ? undefined : path.slice(path.lastIndexOf("/") + 1) || path;
  return {
    name: name ?? base ?? `inode ${dev}:${ino}`,
    ...(path !== undefined && { path }),
    type_id: 1,
    type: "Regular File",
    uid: `${dev}:${ino}`,
  };
}

function fileOf(event: AegisEvent): Ocsf {
  const file = event.file;
  // A summary stands for folded decisions and carries no file: OCSF requires one, and a name says so.
  if (file === undefined) return { name: "(folded decisions: see count)", type_id: 0, type: "Unknown" };
  return fileObject(file.path, file.name, file.dev, file.ino);
}

/** The process acted on: a new program (exec), a traced task (ptrace), the task itself (its cgroup or exe). */
function processOf(event: AegisEvent): Ocsf {
  const task = (event.process ?? {}) as Fields;
  if (event.type === "process.ptrace" && event.ptrace) return { pid: event.ptrace.target.pid };
  if (event.type === "exec" && event.file) {
    const file = fileOf(event);
    return { pid: task.pid, name: file.name, file };
  }
  return task.pid === undefined ? { name: "(folded decisions: see count)" } : processObject(task);
}

function networkOf(event: AegisEvent): Ocsf {
  const net = event.net;
  const inbound = event.type === "net.ingress" || event.type === "net.forward";
  const here: Ocsf = { hostname: event.host };
  const out: Ocsf = {};
  if (net === undefined) {
    out[inbound ? "dst_endpoint" : "src_endpoint"] = here;
    return out;
  }
  const local: Ocsf = inbound ? {} : { ...here };
  if (net.saddr !== undefined) local.ip = net.saddr;
  if (net.sport !== undefined) local.port = net.sport;
  if (net.interface !== undefined) local.interface_name = net.interface;
  const remote: Ocsf = inbound ? { ...here } : {};
  if (net.daddr !== undefined) remote.ip = net.daddr;
  if (net.dport !== undefined) remote.port = net.dport;
  if (event.hostName !== undefined) remote.hostname = event.hostName;
  out.src_endpoint = local;
  if (Object.keys(remote).length > 0) out.dst_endpoint = remote;
  const numbers: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };
  out.connection_info = {
    protocol_name: net.protocol,
    ...(numbers[net.protocol] !== undefined && { protocol_num: numbers[net.protocol] }),
    ...(net.family === "ipv4" || net.family === "ipv6"
      ? { protocol_ver_id: net.family === "ipv4" ? 4 : 6 }
      : {}),
    direction_id: inbound ? 1 : 2,
    direction: inbound ? "Inbound" : "Outbound",
  };
  return out;
}

const OBSERVABLE_TYPES: ReadonlyArray<readonly [string, number, string]> = [
  ["device.hostname", 1, "Hostname"],
  ["actor.process.name", 9, "Process Name"],
  ["process.name", 9, "Process Name"],
  ["file.path", 7, "File Name"],
  ["src_endpoint.ip", 2, "IP Address"],
  ["dst_endpoint.ip", 2, "IP Address"],
  ["dst_endpoint.hostname", 1, "Hostname"],
  ["src_endpoint.port", 11, "Port"],
  ["dst_endpoint.port", 11, "Port"],
];

/** The values a SIEM indexes across classes: `name` is the attribute's place in this object. */
function observablesOf(ocsf: Ocsf): Ocsf[] {
  const found: Ocsf[] = [];
  for (const [name, type_id, type] of OBSERVABLE_TYPES) {
    let value: unknown = ocsf;
    for (const key of name.split(".")) value = (value as Fields | undefined)?.[key];
    if (typeof value === "string" || typeof value === "number") {
      found.push({ name, type_id, type, value: String(value) });
    }
  }
  return found;
}

/** What OCSF has no attribute for: the rule, the policy that decided, the mode and the rest of the event. */
function unmappedOf(event: AegisEvent): Ocsf {
  const rule: Ocsf = { id: event.rule, name: event.rule };
  if (event.tags !== undefined) rule.tags = event.tags;
  if (event.unresolved !== undefined) rule.unresolved = event.unresolved;
  if (event.subject !== undefined) rule.subject = event.subject;
  if (event.hostName !== undefined) rule.hostName = event.hostName;
  const unmapped: Ocsf = { decision: event.decision, mode: event.mode, rule, count: event.count };
  if (event.policy !== undefined) unmapped.policy = event.policy;
  const cgroup = (event.process as Fields | undefined)?.cgroup;
  if (cgroup !== undefined) unmapped.cgroup = cgroup;
  for (const key of ["reason", "op", "move", "ptrace", "signal", "summary"] as const) {
    if (event[key] !== undefined) unmapped[key] = event[key];
  }
  if (event.net?.route !== undefined) unmapped.route = event.net.route;
  if (event.net?.inInterface !== undefined) unmapped.inInterface = event.net.inInterface;
  return unmapped;
}

const ENVELOPE = new Set(["ts", "host", "type", "mode", "policy"]);

function agentOcsf(event: AgentEvent): Ocsf {
  const mapping = AGENT_OCSF[event.type];
  const ocsf = header(event, mapping.class, mapping.activity, mapping.severity);
  ocsf.message = mapping.title;
  const app = { name: "aegisbpf", vendor_name: "aegisbpf", version: VERSION };
  if (mapping.class === APPLICATION_LIFECYCLE) {
    ocsf.app = app;
    const failed = event.type === "policy.reload_failed" || event.type === "agent.error" ||
      event.type === "rule.unresolved";
    ocsf.status_id = failed ? 2 : 1;
    ocsf.status = failed ? "Failure" : "Success";
  } else {
    ocsf.finding_info = {
      uid: `${event.host}/${event.type}/${event.ts}`,
      title: mapping.title,
      types: [event.type],
      product: app,
    };
    ocsf.is_alert = true;
  }
  const unmapped: Ocsf = { mode: event.mode };
  if (event.policy !== undefined) unmapped.policy = event.policy;
  for (const [key, value] of Object.entries(event)) if (!ENVELOPE.has(key)) unmapped[key] = value;
  ocsf.observables = observablesOf(ocsf);
  ocsf.unmapped = unmapped;
  return ocsf;
}
