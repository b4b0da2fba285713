import assert from "node:assert/strict";
import { ifIndex, inNetns } from "../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { VethPair } from "../support/netns.ts";
import { rootTest } from "../support/privileged.ts";
import { counter, denyCidr, setMode } from "../support/slice.ts";

const INGRESS_DENY_SLOT = 5 * 2 + 0;

rootTest(
  "[root] XDP drops packets from a denied source CIDR, and traffic flows again after detach",
  async () => {
    const pair = await VethPair.create();
    const object = loadPrograms([PROGRAMS.ingress]);
    try {
      assert.equal(await pair.pingServer(), true, "ping must work before XDP is attached");
      setMode(object, "enforce");
      denyCidr(object, "ingress4", "198.18.0.0/15", 11);
      const link = inNetns(pair.nsPath(pair.server), () => {
        const index = ifIndex(pair.serverInterface);
        return object.program(PROGRAMS.ingress).attachXdp(index, `${pair.server}/${pair.serverInterface}`);
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
    setMode(object, "enforce");
    denyCidr(object, "ingress4", "203.0.113.0/24", 12);
    inNetns(pair.nsPath(pair.server), () => {
      object.program(PROGRAMS.ingress).attachXdp(ifIndex(pair.serverInterface));
    });
    assert.equal(await pair.pingServer(), true);
    assert.equal(counter(object, INGRESS_DENY_SLOT), 0n);
  } finally {
    object.close();
    await pair.remove();
  }
});
