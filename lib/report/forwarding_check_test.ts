import assert from "node:assert/strict";
import { forwardingCheck } from "./forwarding_check.ts";

const ON = { ipv4: true, ipv6: false };

Deno.test("forwardingCheck() warns when the host forwards and applied egress rules leave forwarded packets", () => {
  const check = forwardingCheck({ forwarding: ON, egressApplied: true, links: ["aegis_connect4"] });
  assert.equal(check.status, "warn");
  assert.match(check.detail, /^net\.ipv4\.ip_forward = 1 and the applied egress rules do not judge/);
  assert.match(check.remediation ?? "", /network\.egress\.forwarded: true/);
});

Deno.test("forwardingCheck() is ok with forward links, without egress rules, or without forwarding", () => {
  const judged = forwardingCheck({
    forwarding: { ipv4: true, ipv6: true },
    egressApplied: true,
    links: ["aegis_forward@eth0", "aegis_forward@tun0"],
  });
  assert.deepEqual([judged.status, judged.detail], [
    "ok",
    "net.ipv4.ip_forward, net.ipv6.conf.all.forwarding = 1; forwarded packets judged on 2 interface(s)",
  ]);
  assert.equal(forwardingCheck({ forwarding: ON, egressApplied: false, links: [] }).status, "ok");
  const off = forwardingCheck({ forwarding: { ipv4: false, ipv6: false }, egressApplied: true, links: [] });
  assert.equal(off.detail, "this host does not forward packets");
});
