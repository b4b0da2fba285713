import assert from "node:assert/strict";
import { ifIndex, inNetns } from "../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { VethPair } from "../support/netns.ts";
import { rootTest } from "../support/privileged.ts";
import { counter, ipv4Rule, writeRules } from "../support/slice.ts";

const INGRESS_DENY_SLOT = 5 * 2 + 0;

rootTest(
  "[root] XDP drops packets from a denied source CIDR, and traffic flows again after detach",
  async () => {
    const pair = await VethPair.create();
    const object = loadPrograms([PROGRAMS.ingress]);
    try {
      assert.equal(await pair.pingServer(), true, "ping must work before XDP is attached");
      const link = inNetns(pair.nsPath(pair.server), () => {
        const ifindex = ifIndex(pair.serverInterface);
        writeRules(object, {
          plan: {
            mode: "enforce",
            ingress: { interfaces: [], failsafe: [], rules: [ipv4Rule("198.18.0.0/15", 11)] },
          },
          interfaces: [{ ifindex, name: pair.serverInterface, defaultDrop: false, ruleId: 0 }],
        });
        return object.program(PROGRAMS.ingress).attachXdp(ifindex, `${pair.server}/${pair.serverInterface}`);
      });

      assert.equal(await pair.pingServer(), false, "ping must fail while the source is denied");
      assert.ok(counter(object, INGRESS_DENY_SLOT) >= 1n, "dropped packets are counted");

      link.close();
      assert.equal(await pair.pingServer(), true, "ping must work again after detach");
    } finally {
      object.close();
      await pair.remove();
    }
  },
);

rootTest("[root] XDP passes packets from sources outside the denied CIDR", async () => {
  const pair = await VethPair.create();
  const object = loadPrograms([PROGRAMS.ingress]);
  try {
    inNetns(pair.nsPath(pair.server), () => {
      const ifindex = ifIndex(pair.serverInterface);
      writeRules(object, {
        plan: {
          mode: "enforce",
          ingress: { interfaces: [], failsafe: [], rules: [ipv4Rule("203.0.113.0/24", 12)] },
        },
        interfaces: [{ ifindex, name: pair.serverInterface, defaultDrop: false, ruleId: 0 }],
      });
      object.program(PROGRAMS.ingress).attachXdp(ifindex);
    });
    assert.equal(await pair.pingServer(), true);
    assert.equal(counter(object, INGRESS_DENY_SLOT), 0n);
  } finally {
    object.close();
    await pair.remove();
  }
});
