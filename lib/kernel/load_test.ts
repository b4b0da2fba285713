import assert from "node:assert/strict";
import { BpfError } from "../../ffi/mod.ts";
import { lsmProbeFailure } from "./load.ts";

const EPERM_LOG = [
  "libbpf: prog 'aegis_file_open': BPF program load failed: Operation not permitted\n",
  "libbpf: prog 'aegis_file_open': failed to load: -1\n",
  "libbpf: failed to load object 'aegisbpf'\n",
].join("");

Deno.test("lsmProbeFailure() names the errno and that bpf is listed among the active LSMs", () => {
  const error = new BpfError("bpf_object__load", 1, { subject: "aegis_file_open", libbpfLog: EPERM_LOG });
  assert.deepEqual(lsmProbeFailure(error, ["lockdown", "capability", "bpf"]), {
    ok: false,
    errno: 1,
    errnoName: "EPERM",
    reason: "BPF-LSM program load failed: EPERM although bpf is listed in /sys/kernel/security/lsm",
    log: EPERM_LOG,
  });
});

Deno.test("lsmProbeFailure() says when BPF LSM is not active, and keeps the verifier log", () => {
  const log = "libbpf: prog 'p': -- BEGIN PROG LOAD LOG --\nR1 invalid mem access\n-- END PROG LOAD LOG --\n";
  const probe = lsmProbeFailure(new BpfError("bpf_object__load", 13, { libbpfLog: log }), ["capability"]);
  assert.equal(probe.ok, false);
  if (probe.ok) return;
  assert.equal(probe.errnoName, "EACCES");
  assert.equal(probe.reason, "BPF-LSM program load failed: EACCES (BPF LSM not active: lsm=capability)");
  assert.equal(probe.log, "R1 invalid mem access");
});

Deno.test("lsmProbeFailure() without securityfs gives the errno alone", () => {
  const probe = lsmProbeFailure(new BpfError("bpf_object__load", 1), undefined);
  assert.equal(probe.ok ? "" : probe.reason, "BPF-LSM program load failed: EPERM");
});
