import assert from "node:assert/strict";
import type { NetRule } from "../../lib/policy/plan.ts";
import { rootTest } from "../support/privileged.ts";
import { drain, listen, ruleSet, withPlane } from "../support/plane.ts";
import { ipv4Rule } from "../support/slice.ts";

const AREAS = ["egress", "bind"] as const;
const NOBODY = 65534;

function ipv6Rule(
  addr: number[],
  prefixLength: number,
  ruleId: number,
  extra: Partial<NetRule> = {},
): NetRule {
  return { ruleId, action: "deny", family: 6, addr: new Uint8Array(addr), prefixLength, ...extra };
}

const LOOPBACK6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

function rules(...ids: string[]) {
  return [
    { id: "default", area: "ingress" as const, action: "deny" as const },
    ...ids.map((id) => ({ id, area: "egress" as const, action: "deny" as const })),
  ];
}

rootTest("[root] egress: enforce denies connect with EPERM and reports a deny event", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "enforce", rules: rules("loopback2"), egress: [ipv4Rule("127.0.0.2/32", 1)] }),
    );
    assert.equal(await cgroup.connect("127.0.0.2", server.port), "EPERM");
    assert.equal(await cgroup.connect("127.0.0.1", server.port), "connected");
    const [event, ...rest] = drain(plane);
    assert.equal(rest.length, 0);
    assert.equal(event?.hook, 2);
    assert.equal(event?.decision, 0);
    assert.equal(event?.mode, 1);
    assert.equal(event?.ruleId, 1);
    assert.equal(event?.gen, plane.config().activeGen, "the event names the generation that decided");
    assert.equal(event?.dport, server.port);
    assert.equal(plane.counters().decisions.connect.deny, 1n);
  });
});

rootTest("[root] egress: audit mode lets the connect through and reports an audit event", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "audit", rules: rules("loopback2"), egress: [ipv4Rule("127.0.0.2/32", 1)] }),
    );
    assert.equal(await cgroup.connect("127.0.0.2", server.port), "connected");
    const events = drain(plane);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.decision, 1);
    assert.equal(events[0]?.mode, 0);
    assert.equal(plane.counters().decisions.connect.audit, 1n);
  });
});

rootTest("[root] egress: IPv4-mapped IPv6 (::ffff:a.b.c.d) is matched as the IPv4 address", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "enforce", rules: rules("loopback2"), egress: [ipv4Rule("127.0.0.2/32", 1)] }),
    );
    assert.equal(await cgroup.connect("::ffff:127.0.0.2", server.port), "EPERM");
    assert.equal(await cgroup.connect("::ffff:127.0.0.1", server.port), "connected");
  });
});

rootTest("[root] egress: IPv6 CIDR rules deny connect6", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "enforce", rules: rules("v6"), egress: [ipv6Rule(LOOPBACK6, 128, 1)] }),
    );
    assert.equal(await cgroup.connect("::1", server.port), "EPERM");
    assert.equal(await cgroup.connect("127.0.0.1", server.port), "connected");
  });
});

rootTest("[root] egress: UDP sendto without connect is denied by sendmsg4 and sendmsg6", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
    await plane.apply(ruleSet({
      mode: "enforce",
      rules: rules("udp4", "udp6"),
      egress: [
        ipv4Rule("127.0.0.2/32", 1, { protocol: "udp" }),
        ipv6Rule(LOOPBACK6, 128, 2, { protocol: "udp" }),
      ],
    }));
    assert.equal(await cgroup.probe("udp-sendto", "127.0.0.2", "9"), "EPERM");
    assert.equal(await cgroup.probe("udp-sendto", "::1", "9"), "EPERM");
    assert.equal(await cgroup.probe("udp-sendto", "127.0.0.1", "9"), "sent");
    assert.equal(plane.counters().decisions.sendmsg.deny, 2n);
  });
});

rootTest(
  "[root] egress: ports and protocol narrow a rule; most specific wins; deny wins an exact tie",
  async () => {
    const a = listen();
    const b = listen();
    try {
      await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: rules("port-a", "allow-3", "tie-deny", "tie-allow"),
          egress: [
            ipv4Rule("127.0.0.0/8", 1, { port: a.port, protocol: "tcp" }),
            ipv4Rule("127.0.0.3/32", 2, { action: "allow", port: a.port, protocol: "tcp" }),
            ipv4Rule("127.0.0.4/32", 3),
            ipv4Rule("127.0.0.4/32", 4, { action: "allow" }),
          ],
        }));
        assert.equal(await cgroup.connect("127.0.0.2", a.port), "EPERM", "port rule denies its port");
        assert.equal(await cgroup.connect("127.0.0.2", b.port), "connected", "other ports pass");
        assert.equal(
          await cgroup.connect("127.0.0.3", a.port),
          "connected",
          "a more specific allow carves out",
        );
        assert.equal(await cgroup.connect("127.0.0.4", b.port), "EPERM", "deny beats allow on an exact tie");
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  },
);

rootTest("[root] egress: user rules match the effective uid, not the real one", async () => {
  const a = listen();
  try {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
      await plane.apply(ruleSet({
        mode: "enforce",
        rules: rules("nobody-nothing"),
        egressUsers: [{ ruleId: 1, uid: NOBODY, ports: [], portsAre: "allowed" }],
      }));
      const asNobody = { setpriv: [`--ruid=0`, `--euid=${NOBODY}`] };
      assert.equal(await cgroup.connect("127.0.0.1", a.port, asNobody), "EPERM", "real 0, effective nobody");
      const asRoot = { setpriv: [`--ruid=${NOBODY}`, `--euid=0`] };
      assert.equal(
        await cgroup.connect("127.0.0.1", a.port, asRoot),
        "connected",
        "real nobody, effective 0",
      );
      const [event] = drain(plane);
      assert.equal(event?.uid, NOBODY, "the event names the effective uid");
    });
  } finally {
    await a.stop();
  }
});

rootTest(
  "[root] egress: a gid denylist denies its ports to that effective gid; a uid entry beats it",
  async () => {
    const a = listen();
    const b = listen();
    try {
      await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: rules("nogroup-b", "nobody-b"),
          egressUsers: [
            { ruleId: 1, gid: NOBODY, ports: [b.port], portsAre: "denied" },
            { ruleId: 2, uid: NOBODY, ports: [b.port], portsAre: "allowed" },
          ],
        }));
        const rootInGroup = { setpriv: ["--reuid=0", `--regid=${NOBODY}`] };
        assert.equal(
          await cgroup.connect("127.0.0.1", b.port, rootInGroup),
          "EPERM",
          "denied port for the gid",
        );
        assert.equal(await cgroup.connect("127.0.0.1", a.port, rootInGroup), "connected", "other ports pass");
        const nobody = { uid: NOBODY };
        assert.equal(await cgroup.connect("127.0.0.1", b.port, nobody), "connected", "the uid entry decides");
        assert.equal(
          await cgroup.connect("127.0.0.1", a.port, nobody),
          "EPERM",
          "and denies what it does not list",
        );
        const events = drain(plane);
        assert.deepEqual(events.map((event) => [event.ruleId, event.gid]), [[1, NOBODY], [2, NOBODY]]);
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  },
);

rootTest("[root] egress: a uid port allowlist denies that uid everything else", async () => {
  const a = listen();
  const b = listen();
  try {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
      await plane.apply(ruleSet({
        mode: "enforce",
        rules: rules("nobody-web"),
        egressUsers: [{ ruleId: 1, uid: NOBODY, ports: [a.port], portsAre: "allowed" }],
      }));
      assert.equal(await cgroup.connect("127.0.0.1", a.port, { uid: NOBODY }), "connected");
      assert.equal(await cgroup.connect("127.0.0.1", b.port, { uid: NOBODY }), "EPERM");
      assert.equal(await cgroup.connect("127.0.0.1", b.port), "connected", "root is not restricted");
    });
  } finally {
    await a.stop();
    await b.stop();
  }
});

rootTest(
  "[root] scope: a canary scope limits rules to its subtree and exempt subtrees are never affected",
  async () => {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
      const canary = cgroup.child("canary");
      const exempt = canary.child("exempt");
      const other = cgroup.child("other");
      await plane.apply(ruleSet({
        mode: "enforce",
        rules: rules("loopback2"),
        egress: [ipv4Rule("127.0.0.2/32", 1)],
        scope: { include: [canary.relativePath], exempt: [exempt.relativePath] },
      }));
      assert.equal(await canary.connect("127.0.0.2", server.port), "EPERM");
      assert.equal(await other.connect("127.0.0.2", server.port), "connected");
      assert.equal(await exempt.connect("127.0.0.2", server.port), "connected");

      await plane.apply(ruleSet({
        mode: "enforce",
        rules: rules("loopback2"),
        egress: [ipv4Rule("127.0.0.2/32", 1)],
        scope: { include: [], exempt: [exempt.relativePath] },
      }));
      assert.equal(await other.connect("127.0.0.2", server.port), "EPERM", "no include list: every task");
      assert.equal(await exempt.connect("127.0.0.2", server.port), "connected");
    });
  },
);

rootTest(
  "[root] scope: users entries apply in scope only; a CIDR deny next to users entries reports the destination it denied",
  async () => {
    const a = listen();
    try {
      await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
        const canary = cgroup.child("canary");
        const exempt = canary.child("exempt");
        const other = cgroup.child("other");
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: rules("loopback2", "nobody-nothing"),
          egress: [ipv4Rule("127.0.0.2/32", 1)],
          egressUsers: [{ ruleId: 2, uid: NOBODY, ports: [], portsAre: "allowed" }],
          scope: { include: [canary.relativePath], exempt: [exempt.relativePath] },
        }));
        const nobody = { uid: NOBODY };
        assert.equal(await canary.connect("127.0.0.1", a.port, nobody), "EPERM", "users entry in scope");
        assert.equal(
          await other.connect("127.0.0.1", a.port, nobody),
          "connected",
          "outside the include list",
        );
        assert.equal(await exempt.connect("127.0.0.1", a.port, nobody), "connected", "in an exempt subtree");
        assert.equal(await canary.connect("127.0.0.1", a.port), "connected", "root has no users entry");
        assert.equal(await canary.connect("127.0.0.2", server.port), "EPERM", "the CIDR rule in scope");
        assert.equal(await other.connect("127.0.0.2", server.port), "connected");
        assert.equal(await canary.probe("udp-sendto", "127.0.0.2", "9"), "EPERM", "sendmsg4 alike");
        assert.equal(await other.probe("udp-sendto", "127.0.0.2", "9"), "sent");
        const events = drain(plane);
        assert.deepEqual(
          events.map((
            event,
          ) => [event.hook, event.ruleId, event.uid, event.dport, [...event.daddr.slice(0, 4)]]),
          [
            [2, 2, NOBODY, a.port, [127, 0, 0, 1]],
            [2, 1, 0, server.port, [127, 0, 0, 2]],
            [3, 1, 0, 9, [127, 0, 0, 2]],
          ],
          "only the decisions in scope are reported, each with its rule and destination",
        );
        const canaryId = BigInt(Deno.statSync(canary.path).ino ?? 0);
        assert.ok(
          events.every((event) => event.family === 4 && event.cgroupId === canaryId),
          "from the canary",
        );
      });
    } finally {
      await a.stop();
    }
  },
);

rootTest("[root] bind: enforce denies binding a listed port with EPERM, audit reports it", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup }) => {
    const port = 20000 + (Deno.pid % 20000);
    await plane.apply(ruleSet({
      mode: "enforce",
      rules: rules("bind-tcp", "bind-udp"),
      bind: [{ ruleId: 1, port, protocol: "tcp" }, { ruleId: 2, port, protocol: "udp" }],
    }));
    assert.equal(await cgroup.probe("bind", "tcp", String(port)), "EPERM");
    assert.equal(await cgroup.probe("bind6", "tcp", String(port)), "EPERM");
    assert.equal(await cgroup.probe("bind", "udp", String(port)), "EPERM");
    assert.equal(await cgroup.probe("bind", "tcp", String(port + 1)), "bound");
    const events = drain(plane);
    assert.equal(events.length, 3);
    assert.ok(events.every((event) => event.hook === 4 && event.sport === port));

    await plane.apply(
      ruleSet({ mode: "audit", rules: rules("bind-tcp"), bind: [{ ruleId: 1, port, protocol: "tcp" }] }),
    );
    assert.equal(await cgroup.probe("bind", "tcp", String(port)), "bound");
    assert.equal(drain(plane)[0]?.decision, 1);
  });
});
