import assert from "node:assert/strict";
import type { BpfObject } from "../../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../../lib/kernel/object.ts";
import { counter, drainEvents, inodeOf, writeRules } from "../../support/slice.ts";

// These run inside the qemu guest booted by tests/vm/harness.ts, where BPF-LSM programs load.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const FILE_OPEN_DENY_SLOT = 0;
const DENY = 0;
const AUDIT = 1;

function vmTest(name: string, fn: (object: BpfObject, dir: string) => void): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: () => {
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-lsm-" });
      const object = loadPrograms([PROGRAMS.fileOpen]);
      try {
        fn(object, dir);
      } finally {
        object.close();
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

/** Opens `path` for reading; returns "ok" or the OS error text. */
function tryOpen(path: string): string {
  try {
    Deno.openSync(path).close();
    return "ok";
  } catch (error) {
    return String(error);
  }
}

vmTest("[vm] lsm/file_open denies opening a denied inode with EPERM, allows others", (object, dir) => {
  Deno.writeTextFileSync(`${dir}/denied`, "secret");
  Deno.writeTextFileSync(`${dir}/allowed`, "public");
  const key = inodeOf(`${dir}/denied`, 5);
  writeRules(object, { plan: { mode: "enforce" }, files: [key] });
  object.program(PROGRAMS.fileOpen).attach();

  assert.match(tryOpen(`${dir}/denied`), /os error 1\b/, "EPERM");
  assert.equal(tryOpen(`${dir}/allowed`), "ok");
  assert.equal(counter(object, FILE_OPEN_DENY_SLOT), 1n);
  const events = drainEvents(object);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.decision, DENY);
  assert.equal(events[0]?.ino, key.ino);
  assert.equal(events[0]?.ruleId, 5);
});

vmTest("[vm] lsm/file_open denies a hard link to a denied inode", (object, dir) => {
  Deno.writeTextFileSync(`${dir}/denied`, "secret");
  Deno.linkSync(`${dir}/denied`, `${dir}/hardlink`);
  const key = inodeOf(`${dir}/denied`, 6);
  writeRules(object, { plan: { mode: "enforce" }, files: [key] });
  object.program(PROGRAMS.fileOpen).attach();

  assert.match(tryOpen(`${dir}/hardlink`), /os error 1\b/);
});

vmTest("[vm] lsm/file_open in audit mode allows the open and reports it", (object, dir) => {
  Deno.writeTextFileSync(`${dir}/denied`, "secret");
  const key = inodeOf(`${dir}/denied`, 8);
  writeRules(object, { plan: { mode: "audit" }, files: [key] });
  object.program(PROGRAMS.fileOpen).attach();

  assert.equal(tryOpen(`${dir}/denied`), "ok");
  const events = drainEvents(object);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.decision, AUDIT);
  assert.equal(events[0]?.ruleId, 8);
});

vmTest("[vm] lsm/file_open stops denying once its link is closed", (object, dir) => {
  Deno.writeTextFileSync(`${dir}/denied`, "secret");
  const key = inodeOf(`${dir}/denied`, 9);
  writeRules(object, { plan: { mode: "enforce" }, files: [key] });
  const link = object.program(PROGRAMS.fileOpen).attach();
  assert.match(tryOpen(`${dir}/denied`), /os error 1\b/);
  link.close();
  assert.equal(tryOpen(`${dir}/denied`), "ok");
});
