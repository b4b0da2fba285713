import assert from "node:assert/strict";
import { ptraceUnguarded } from "./health.ts";

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
