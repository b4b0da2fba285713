/**
 * libbpf() and libc() bind each symbol on its first use (binding all of them cost every command tens of
 * milliseconds), give every symbol of their tables, and still read the errno of a failed call: no binding
 * runs between the call and the read.
 */
import assert from "node:assert/strict";
import { cString, lastErrno, libbpf, libc } from "../../ffi/libbpf.ts";
import { rootTest } from "../support/privileged.ts";

rootTest("[root] libbpf() and libc() give every symbol, each bound on first use", () => {
  const symbols = Object.keys(libbpf());
  for (const name of ["libbpf_major_version", "bpf_obj_get", "bpf_object__open_mem", "libbpf_get_error"]) {
    assert.ok(symbols.includes(name), name);
  }
  const descriptor = () => Object.getOwnPropertyDescriptor(libbpf(), "libbpf_major_version");
  assert.ok(descriptor()?.get, "not bound before its first use");
  assert.equal(libbpf().libbpf_major_version(), 1);
  assert.equal(descriptor()?.get, undefined, "bound by its first use");
  assert.equal(typeof descriptor()?.value, "function");
  assert.equal(libbpf().libbpf_major_version(), 1, "bound once, called again");
  assert.ok(Object.keys(libc()).includes("open"));
});

rootTest("[root] a failed call's errno is read right after it, the call's first use included", () => {
  const missing = cString(`/nonexistent-${Deno.pid}/pin`);
  // bpf_obj_get and open are bound here for the first time in this process.
  assert.equal(libbpf().bpf_obj_get(missing), -2, "libbpf 1.x returns -ENOENT");
  assert.equal(libc().open(missing, 0), -1);
  assert.equal(lastErrno(), 2, "ENOENT from open, not from a binding");
  assert.equal(Number(libbpf().libbpf_get_error(null)), -2, "libbpf_get_error(NULL) reads the same errno");
});
