import assert from "node:assert/strict";
import { missingLinks, type PinnedLink } from "./inspect.ts";

const link = (name: string, attached = true): PinnedLink => ({
  name,
  type: "cgroup",
  programId: 1,
  attached,
});
const TRACEPOINTS = ["aegis_tp_openat", "aegis_tp_open", "aegis_tp_openat2"].map((name) => link(name));

Deno.test("missingLinks() accepts BPF-LSM or the whole tracepoint fallback for file, and needs every egress hook", () => {
  assert.deepEqual(missingLinks(["file"], [], [link("aegis_file_open")]), []);
  assert.deepEqual(missingLinks(["file"], [], TRACEPOINTS), []);
  assert.deepEqual(
    missingLinks(["file"], [], TRACEPOINTS.slice(1)),
    ["aegis_tp_openat"],
    "a partial fallback",
  );
  assert.deepEqual(missingLinks(["file", "exec"], [], []), ["aegis_file_open", "aegis_bprm_check"]);
  assert.deepEqual(
    missingLinks(["egress"], [], [link("aegis_connect4"), link("aegis_connect6"), link("aegis_sendmsg4")]),
    ["aegis_sendmsg6"],
  );
});

Deno.test("missingLinks() counts a detached link as missing, and needs one XDP link per interface", () => {
  assert.deepEqual(missingLinks(["bind"], [], [link("aegis_bind4"), link("aegis_bind6", false)]), [
    "aegis_bind6",
  ]);
  assert.deepEqual(missingLinks(["ingress"], ["eth0", "eth1"], [link("aegis_xdp@eth0")]), ["aegis_xdp@eth1"]);
  assert.deepEqual(missingLinks(["ingress"], [], []), [], "no interface, nothing needed");
});
