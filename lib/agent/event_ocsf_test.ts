import assert from "node:assert/strict";
import { AEGIS_EVENT, DECISION, decodeEvent, EVENT, FAMILY, HOOK, MODE } from "../../ffi/mod.ts";
import {
  type AegisEvent,
  EVENT_TYPES,
  type EventContext,
  EXEC_REASONS,
  FILE_CHANGE_OPS,
  FILE_WRITE_OPS,
  formatEvent,
  IDENTITY_OPS,
  PTRACE_OPS,
} from "../kernel/events.ts";
import { RuleTable } from "../policy/rule_table.ts";
import { jsonText } from "../text/printable.ts";
import { AGENT_EVENT_TYPES, agentEvent } from "./agent_events.ts";
import { AGENT_OCSF, KERNEL_OCSF, ocsfEvent } from "./event_ocsf.ts";
import { OCSF_CLASSES, ocsfProblems } from "../../tests/support/ocsf.ts";

const F = AEGIS_EVENT.fields;
const POLICY = { name: "web", version: 7, sha256: "ab".repeat(32) };
/** A comm and a path as an attacker would choose them: quotes, a newline, a fake JSON field. */
const COMM = 'x"\n,"a":{';
const PATH = '/srv/evil"\n}{"type":"x"';

const context: EventContext = {
  host: "node-1",
  generations: [{
    rules: RuleTable.of([{ id: "r1", area: "file", action: "deny", path: PATH, tags: ["T1003.008", "pci"] }]),
    policy: POLICY,
  }, undefined],
  bootToWallNs: 1_700_000_000_000_000_000n,
  cgroupPath: () => "/test.slice",
  interfaceName: () => "eth0",
};

/** The ops each hook's records carry: every op formatEvent knows for the hook. */
function opsOf(hook: number): number[] {
  const ops = {
    [HOOK.FILE_CHANGE]: FILE_CHANGE_OPS,
    [HOOK.FILE_WRITE]: FILE_WRITE_OPS,
    [HOOK.PTRACE]: PTRACE_OPS,
    [HOOK.IDENTITY]: IDENTITY_OPS,
    [HOOK.EXEC]: EXEC_REASONS,
  }[hook];
  return ops === undefined ? [0] : Object.keys(ops).map(Number);
}

/**
 * Events of every kernel type, decoded by formatEvent from records built here as the kernel writes them:
 * the BPF-LSM types cannot be provoked on this host, so every type is checked from the same decoder.
 */
function kernelEvents(): AegisEvent[] {
  const events: AegisEvent[] = [];
  for (let hook = 0; hook < HOOK.COUNT; hook++) {
    for (const [decision, mode] of [[DECISION.DENY, MODE.ENFORCE], [DECISION.AUDIT, MODE.AUDIT]]) {
      for (const op of opsOf(hook)) {
        for (const flags of [0, EVENT.SUMMARY]) {
          for (
            const family of hook === HOOK.SOCKET ? [FAMILY.PACKET, FAMILY.XDP] : [FAMILY.IPV4, FAMILY.IPV6]
          ) {
            const bytes = new Uint8Array(AEGIS_EVENT.size);
            const view = new DataView(bytes.buffer);
            view.setUint32(F.ts_boot_ns.offset + 4, 1000, true);
            for (const [field, value] of [["pid", 4242], ["ppid", 1], ["uid", 1000], ["count", 3]] as const) {
              view.setUint32(F[field].offset, value, true);
            }
            view.setUint32(F.dev.offset, 66, true);
            view.setUint32(F.ino.offset, 1234, true);
            view.setUint16(F.dport.offset, 443, true);
            view.setUint8(F.hook.offset, hook);
            view.setUint8(F.decision.offset, decision!);
            view.setUint8(F.mode.offset, mode!);
            view.setUint8(F.family.offset, family);
            view.setUint8(F.protocol.offset, 6);
            view.setUint8(F.flags.offset, flags);
            view.setUint8(F.op.offset, op);
            bytes.set([10, 0, 0, 9], F.daddr.offset);
            bytes.set([110, 97, 109, 101], F.daddr.offset + 4);
            bytes.set(new TextEncoder().encode(COMM), F.comm.offset);
            events.push(formatEvent(decodeEvent(bytes), context));
          }
        }
      }
    }
  }
  return events;
}

const CLASS_OF: Record<string, number> = {
  "file.open": 1001,
  "file.change": 1001,
  "file.write": 1001,
  "exec": 1007,
  "process.ptrace": 1007,
  "process.identity": 1007,
  "scope.escape": 1007,
  "net.connect": 4001,
  "net.sendmsg": 4001,
  "net.bind": 4001,
  "net.ingress": 4001,
  "net.packet": 4001,
  "net.socket": 4001,
  "net.route": 4001,
  "net.forward": 4001,
};

Deno.test("ocsfEvent() has a class for every kernel and agent event type, and no other", () => {
  assert.deepEqual(Object.keys(KERNEL_OCSF).sort(), [...EVENT_TYPES].sort());
  assert.deepEqual(Object.keys(AGENT_OCSF).sort(), [...AGENT_EVENT_TYPES].sort());
  assert.deepEqual(Object.keys(CLASS_OF).sort(), [...EVENT_TYPES].sort());
  for (const mapping of [...Object.values(KERNEL_OCSF), ...Object.values(AGENT_OCSF)]) {
    assert.ok(OCSF_CLASSES.classes[mapping.class.uid], `${mapping.class.name} is in ocsf-classes.json`);
  }
});

Deno.test("ocsfEvent() gives every kernel event type, denied and audited, every attribute its OCSF class requires", () => {
  const events = kernelEvents();
  assert.deepEqual([...new Set(events.map((event) => event.type))].sort(), [...EVENT_TYPES].sort());
  for (const event of events) {
    const ocsf = ocsfEvent(event)!;
    const what = `${event.type} ${event.decision} op ${event.op ?? "-"}${event.summary ? " summary" : ""}`;
    assert.deepEqual(ocsfProblems(ocsf), [], what);
    assert.equal(ocsf.class_uid, CLASS_OF[event.type], what);
    const denied = event.decision === "deny";
    assert.deepEqual(
      [ocsf.action_id, ocsf.disposition_id, ocsf.status_id],
      denied ? [2, 2, 2] : [3, 15, 1],
      `${what}: deny is Denied/Blocked, audit Observed/Detected ("would be blocked")`,
    );
    const unmapped = ocsf.unmapped as Record<string, unknown>;
    assert.deepEqual(unmapped.rule, { id: "r1", name: "r1", tags: ["T1003.008", "pci"] }, what);
    assert.deepEqual(unmapped.policy, POLICY, what);
    assert.deepEqual(ocsf.attacks, [{ technique: { uid: "T1003.008" }, version: "MITRE ATT&CK" }], what);
    assert.ok((ocsf.observables as unknown[]).length > 0, what);
    if (!event.summary && event.process !== undefined) {
      assert.equal((ocsf.actor as { process: { name: string } }).process.name, COMM, what);
    }
  }
});

Deno.test("ocsfEvent() maps the network endpoints and the file of a decision", () => {
  const events = kernelEvents().filter((event) => !event.summary && event.decision === "deny");
  const connect = ocsfEvent(events.find((event) => event.type === "net.connect")!)!;
  assert.equal(connect.activity_id, 5, "a denied connect is Refuse");
  assert.deepEqual(connect.dst_endpoint, { ip: "10.0.0.9", port: 443 });
  assert.deepEqual(connect.src_endpoint, { hostname: "node-1" });
  const open = ocsfEvent(events.find((event) => event.type === "file.open")!)!;
  assert.equal(open.activity_id, 14);
  assert.deepEqual(open.file, {
    name: PATH.slice(5),
    path: PATH,
    type_id: 1,
    type: "Regular File",
    uid: "66:1234",
  });
  const bind = ocsfEvent(events.find((event) => event.type === "net.bind")!)!;
  assert.equal(bind.activity_id, 7);
});

Deno.test("ocsfEvent() gives every agent event type every attribute its OCSF class requires", () => {
  for (const type of AGENT_EVENT_TYPES) {
    const event = agentEvent({ host: "node-1", mode: "enforce", policy: POLICY }, type, { why: COMM });
    const ocsf = ocsfEvent(event)!;
    assert.deepEqual(ocsfProblems(ocsf), [], type);
    assert.equal(
      ocsf.class_uid,
      type === "deadman.expired" || type === "events.dropped" || type === "tamper.detected" ||
        type === "policy.check_failed"
        ? 2004
        : 6002,
      type,
    );
    assert.deepEqual((ocsf.unmapped as Record<string, unknown>).why, COMM);
  }
});

Deno.test("ocsfEvent() output is one JSON line whatever the comm and path hold", () => {
  for (const event of kernelEvents()) {
    const line = jsonText(ocsfEvent(event));
    assert.ok(!/[\n\r\u2028\u2029]/.test(line), line);
    assert.deepEqual(JSON.parse(line), JSON.parse(JSON.stringify(ocsfEvent(event))));
  }
});

Deno.test("ocsfEvent() leaves a type it does not know to the caller", () => {
  assert.equal(
    ocsfEvent({ ts: "2026-01-01T00:00:00Z", host: "h", type: "future.thing", mode: "audit" }),
    undefined,
  );
  assert.equal(
    ocsfEvent({ ts: "2026-01-01T00:00:00Z", host: "h", type: "agent.start", decision: "deny" }),
    undefined,
  );
});
