import assert from "node:assert/strict";
import { ensureMounted } from "../../lib/kernel/mounts.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { rootTest } from "../support/privileged.ts";
import { drainEvents, inodeOf, writeRules } from "../support/slice.ts";

const FILE_OPEN_HOOK = 0;
const AUDIT = 1;

rootTest("[root] the openat tracepoint reports an open of a denied inode as an audit event", () => {
  ensureMounted("tracefs");
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-tp-" });
  const object = loadPrograms([PROGRAMS.fileOpenAudit]);
  try {
    const denied = `${dir}/denied.txt`;
    const other = `${dir}/other.txt`;
    Deno.writeTextFileSync(denied, "secret");
    Deno.writeTextFileSync(other, "public");
    const key = inodeOf(denied, 42);
    writeRules(object, { plan: { mode: "enforce" }, files: [key] });
    object.program(PROGRAMS.fileOpenAudit).attach();

    Deno.readTextFileSync(other);
    assert.equal(Deno.readTextFileSync(denied), "secret", "the tracepoint audits, it never denies");

    const events = drainEvents(object).filter((event) => event.pid === Deno.pid);
    assert.equal(events.length, 1, "one event: the denied file, not the other one");
    const [event] = events;
    assert.equal(event?.ino, key.ino);
    assert.equal(event?.dev, key.dev);
    assert.equal(event?.hook, FILE_OPEN_HOOK);
    assert.equal(event?.decision, AUDIT);
    assert.equal(event?.ruleId, 42);
    assert.equal(event?.uid, 0);
    assert.ok((event?.tsBootNs ?? 0n) > 0n);
  } finally {
    object.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
