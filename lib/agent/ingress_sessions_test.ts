import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { emptyPlan } from "../policy/plan.ts";
import { IngressSessions } from "./ingress_sessions.ts";

function fakePlane() {
  const live = new Map<number, { interface: string; port?: number }>();
  let next = 1;
  let reaped = 0;
  return {
    live,
    setReaped: (n: number) => reaped = n,
    addSession(entry: { interface: string; port?: number }) {
      live.set(next, entry);
      return next++;
    },
    removeSession(id: number) {
      live.delete(id);
    },
    reapSessions(_now: bigint) {
      return reaped;
    },
  };
}

function plan() {
  const p = emptyPlan();
  p.ingress.interfaces.push({ name: "eth0", defaultDrop: true, ruleId: 0 });
  p.ingress.interfaces.push({ name: "eth1", defaultDrop: false, ruleId: 0 });
  return p;
}

Deno.test("IngressSessions.open() adds one kernel entry per default-drop interface and port", () => {
  const plane = fakePlane();
  const sessions = new IngressSessions(plane as never, () => 0n);
  const session = sessions.open(plan(), { cidr: "192.0.2.0/24", ports: [22, 443], ttlMs: 60_000 });
  assert.deepEqual(session.interfaces, ["eth0"]);
  assert.deepEqual([...plane.live.values()].map((e) => `${e.interface}:${e.port}`), ["eth0:22", "eth0:443"]);
  assert.equal(sessions.close(session.id), true);
  assert.equal(plane.live.size, 0);
  assert.equal(sessions.close(session.id), false);
});

Deno.test("IngressSessions.open() refuses an interface the plan does not filter, naming those it does", () => {
  const sessions = new IngressSessions(fakePlane() as never, () => 0n);
  assert.throws(
    () => sessions.open(plan(), { cidr: "192.0.2.0/24", ports: [], ttlMs: 1000, interface: "wlan0" }),
    (error) => error instanceof InputError && /not filtered by this agent \(eth0, eth1\)/.test(error.message),
  );
});

Deno.test("IngressSessions.reap() forgets sessions whose TTL ended once the kernel reaped entries", () => {
  const plane = fakePlane();
  const sessions = new IngressSessions(plane as never, () => 0n);
  const session = sessions.open(plan(), { cidr: "192.0.2.1/32", ports: [], ttlMs: 1 });
  sessions.reap(0n);
  plane.setReaped(1);
  sessions.reap(1n << 62n);
  assert.equal(sessions.close(session.id), false);
});
