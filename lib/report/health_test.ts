import assert from "node:assert/strict";
import { listsConnections, ptraceUnguarded } from "./health.ts";

Deno.test("ptraceUnguarded() warns only when the live rules have a scope and the guard is not attached", () => {
  const scoped = { scopeInclude: 1, scopeExempt: 0 };
  const guard = { name: "aegis_ptrace_access", attached: true };
  assert.match(ptraceUnguarded(scoped, []) ?? "", /^the ptrace guard is not enforced/);
  assert.match(ptraceUnguarded({ scopeInclude: 0, scopeExempt: 2 }, []) ?? "", /ptrace_scope=2/);
  assert.match(ptraceUnguarded(scoped, [{ ...guard, attached: false }]) ?? "", /not enforced/);
  assert.equal(ptraceUnguarded(scoped, [guard]), undefined);
  assert.equal(
    ptraceUnguarded({ scopeInclude: 0, scopeExempt: 0 }, []),
    undefined,
    "no scope, nothing to guard",
  );
  assert.equal(ptraceUnguarded(undefined, []), undefined, "nothing pinned");
});

Deno.test("listsConnections() lists old connections only where the apply could leave some open", () => {
  assert.equal(listsConnections(false, "audit", "5.15.0-100-generic"), false, "no egress rules applied");
  assert.equal(listsConnections(true, "enforce", "6.5.0"), false, "6.5+ and enforce: the apply closed them");
  assert.equal(listsConnections(true, "enforce", "6.18.1-cloud-amd64"), false);
  assert.equal(listsConnections(true, "enforce", "7.0.0"), false);
  assert.equal(listsConnections(true, "enforce", "6.4.16"), true, "no bpf_sock_destroy before 6.5");
  assert.equal(listsConnections(true, "enforce", "5.15.0-100-generic"), true);
  assert.equal(listsConnections(true, "audit", "6.12.95+deb12-cloud-amd64"), true, "in audit, only listed");
});
