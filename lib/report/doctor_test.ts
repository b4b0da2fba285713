import assert from "node:assert/strict";
import type { LoadProbe } from "../kernel/probe.ts";
import { ptraceGuardCheck } from "./doctor.ts";

const loads: LoadProbe = { name: "aegis_ptrace_access", kind: "BPF-LSM", ok: true, ms: 1 };
const refused: LoadProbe = {
  name: "aegis_ptrace_access",
  kind: "BPF-LSM",
  ok: false,
  ms: 1,
  errno: 1,
  errnoName: "EPERM",
  error: "load failed",
};

Deno.test("ptraceGuardCheck() is ok where BPF-LSM runs the guard, and warns where it cannot unless Yama covers it", () => {
  const enforced = ptraceGuardCheck([loads], ["capability", "bpf"], 0);
  assert.equal(enforced.status, "ok");
  assert.match(
    enforced.detail,
    /^aegis_ptrace_access loads: enforced with a scope; kernel.yama.ptrace_scope=0$/,
  );

  const host = ptraceGuardCheck([refused], ["capability", "bpf"], undefined);
  assert.equal(host.status, "warn");
  assert.match(host.detail, /^not enforced \(aegis_ptrace_access EPERM\): a task in a scope can trace/);
  assert.match(host.detail, /Yama is not active$/);
  assert.match(host.remediation ?? "", /boot with Yama \(yama in lsm=...\) and kernel.yama.ptrace_scope=2$/);
  assert.match(ptraceGuardCheck([refused], [], 0).remediation ?? "", /sysctl -w kernel.yama.ptrace_scope=2/);

  assert.match(ptraceGuardCheck([loads], ["capability"], 1).detail, /\(bpf is not an active LSM\)/);
  assert.equal(ptraceGuardCheck([loads], ["capability"], 1).status, "warn", "1 leaves descendants open");
  const yama = ptraceGuardCheck([refused], undefined, 2);
  assert.equal(yama.status, "ok");
  assert.match(yama.detail, /ptrace_scope=2, which refuses it to tasks without CAP_SYS_PTRACE$/);
  assert.equal(yama.remediation, undefined);
});
