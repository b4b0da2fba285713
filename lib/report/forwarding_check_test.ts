import assert from "node:assert/strict";
import { hasTcx } from "../kernel/links.ts";
import { forwardingCheck } from "./forwarding_check.ts";

const ON = { ipv4: true, ipv6: false };

Deno.test("forwardingCheck() warns when the host forwards and applied egress rules leave forwarded packets", () => {
  const check = forwardingCheck({
    forwarding: ON,
    egressApplied: true,
    links: ["aegis_connect4"],
    tcx: true,
  });
  assert.equal(check.status, "warn");
  assert.match(check.detail, /^net\.ipv4\.ip_forward = 1 and the applied egress rules do not judge/);
  assert.match(check.remediation ?? "", /set network\.egress\.forwarded: true/);
  const old = forwardingCheck({ forwarding: ON, egressApplied: true, links: [], tcx: false });
  assert.match(
    old.remediation ?? "",
    /^set network\.egress\.forwarded: true .*: it attaches classic tc filters\)$/,
  );
});

Deno.test("forwardingCheck() is ok with forward links, without egress rules, or without forwarding", () => {
  const judged = forwardingCheck({
    forwarding: { ipv4: true, ipv6: true },
    egressApplied: true,
    links: ["aegis_forward@eth0", "aegis_forward@tun0"],
    tcx: true,
  });
  assert.deepEqual([judged.status, judged.detail], [
    "ok",
    "net.ipv4.ip_forward, net.ipv6.conf.all.forwarding = 1; forwarded packets judged on 2 interface(s) (tcx links)",
  ]);
  const legacy = forwardingCheck({
    forwarding: ON,
    egressApplied: true,
    links: ["aegis_forward@eth0"],
    tcx: false,
  });
  assert.match(
    legacy.detail,
    /judged on 1 interface\(s\) \(classic tc filters: this kernel has no tcx links/,
  );
  assert.equal(forwardingCheck({ forwarding: ON, egressApplied: false, links: [], tcx: true }).status, "ok");
  const off = forwardingCheck({
    forwarding: { ipv4: false, ipv6: false },
    egressApplied: true,
    links: [],
    tcx: true,
  });
  assert.equal(off.detail, "this host does not forward packets");
});

Deno.test("hasTcx() is true from Linux 6.6 on", () => {
  assert.deepEqual(
    ["6.1.0-57-cloud-amd64", "6.5.13", "6.6.0", "6.12.118+deb12-cloud-amd64", "7.0.1"].map(hasTcx),
    [false, false, true, true, true],
  );
});
