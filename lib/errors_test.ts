import assert from "node:assert/strict";
import { BpfError } from "../ffi/error.ts";
import { exitCodeFor, formatError, RefusedError, UsageError } from "./errors.ts";

Deno.test("exitCodeFor() maps usage errors to 2, refusals to 3 and everything else to 1", () => {
  assert.equal(exitCodeFor(new UsageError("bad flag")), 2);
  assert.equal(exitCodeFor(new RefusedError("cannot enforce")), 3);
  assert.equal(exitCodeFor(new BpfError("bpf_object__load", 1)), 1);
  assert.equal(exitCodeFor("a string"), 1);
});

Deno.test("formatError() prints one text line or one JSON object", () => {
  assert.equal(
    formatError(new UsageError("Unknown command: frob"), "text"),
    "aegisbpf: error: Unknown command: frob",
  );
  assert.deepEqual(JSON.parse(formatError(new RefusedError("no"), "json")), {
    level: "error",
    error: "RefusedError",
    message: "no",
    exitCode: 3,
  });
});
