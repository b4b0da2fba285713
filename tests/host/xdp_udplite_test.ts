/**
 * UDP-Lite through XDP on a veth pair between two namespaces: a port rule without a protocol drops a
 * UDP-Lite datagram to that port (XDP reads UDP-Lite's ports), over IPv4 and IPv6, and lets one to another
 * port through.
 */
import assert from "node:assert/strict";
import { HOOK, inNetns } from "../../ffi/mod.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { VethPair } from "../support/netns.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";

const DENIED_PORT = 5300;
const OTHER_PORT = 5301;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "no-5300", area: "ingress", action: "deny" },
];

async function build(dir: string): Promise<string> {
  const source = new URL("../support/udplite_probe.c", import.meta.url).pathname;
  await must("clang", ["-O2", "-Wall", "-Werror", "-o", `${dir}/udplite_probe`, source]);
  return `${dir}/udplite_probe`;
}

/** Whether one UDP-Lite datagram from the client reaches a receiver on the server's `port`. */
async function delivered(probe: string, pair: VethPair, address: string, port: number): Promise<boolean> {
  const receiver = new Deno.Command("ip", {
    args: ["netns", "exec", pair.server, probe, "recv", String(port), "1000"],
    stdout: "piped",
  }).spawn();
  const lines = receiver.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = (await lines.read()).value ?? "";
  assert.match(text, /^ready/, "the receiver is bound");
  assert.equal(
    await must("ip", ["netns", "exec", pair.client, probe, "send", address, String(port)]),
    "sent\n",
  );
  while (!/received|timeout/.test(text)) {
    const next = await lines.read();
    if (next.done) break;
    text += next.value;
  }
  await receiver.status;
  return text.includes("received");
}

rootTest(
  "[root] ingress: XDP drops UDP-Lite to a port under a port rule without protocol, IPv4 and IPv6",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-udplite-" });
    const pair = await VethPair.create();
    try {
      const probe = await build(dir);
      await withPlane({ areas: ["ingress"] }, async ({ plane }) => {
        for (const address of [pair.serverAddress, pair.serverAddress6]) {
          assert.equal(
            await delivered(probe, pair, address, DENIED_PORT),
            true,
            `${address}: before any rule`,
          );
        }
        await inNetns(pair.nsPath(pair.server), () =>
          plane.apply(ruleSet({
            mode: "enforce",
            rules: RULES,
            ingress: {
              interfaces: [{ name: pair.serverInterface, defaultDrop: false, ruleId: 0 }],
              failsafe: [],
              rules: ["0.0.0.0/0", "::/0"].map((cidr) => ({
                ruleId: 1,
                action: "deny" as const,
                ...parseCidr(cidr),
                port: DENIED_PORT,
              })),
            },
          })));
        drain(plane);
        for (const address of [pair.serverAddress, pair.serverAddress6]) {
          assert.equal(await delivered(probe, pair, address, DENIED_PORT), false, `${address}: dropped`);
          assert.equal(await delivered(probe, pair, address, OTHER_PORT), true, `${address}: another port`);
        }
        const events = drain(plane).filter((event) => event.hook === HOOK.INGRESS && event.protocol === 136);
        assert.ok(events.length >= 2, `UDP-Lite drops reported, got ${events.length}`);
        assert.ok(events.every((event) => event.dport === DENIED_PORT && event.ruleId === 1));
      });
    } finally {
      await pair.remove();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
