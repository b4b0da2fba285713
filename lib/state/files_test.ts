import assert from "node:assert/strict";
import { join } from "node:path";
import { type LockHolder, readHolder } from "./lock_holder.ts";
import { acquireStateLock, isTempFileName, StateLockedError, writeFileAtomic } from "./files.ts";

async function withTempDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-state-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();

Deno.test("writeFileAtomic() writes the whole file with the mode asked", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "f");
    writeFileAtomic(path, "one", 0o600);
    assert.equal(Deno.readTextFileSync(path), "one");
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    writeFileAtomic(path, new Uint8Array([1, 2, 3]), 0o644);
    assert.deepEqual([...Deno.readFileSync(path)], [1, 2, 3]);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o644);
  });
});

Deno.test("writeFileAtomic() leaves no temporary file behind", async () => {
  await withTempDir((dir) => {
    for (let i = 0; i < 5; i++) writeFileAtomic(join(dir, "f"), `v${i}`, 0o644);
    assert.deepEqual(names(dir), ["f"]);
  });
});

Deno.test("writeFileAtomic() with overwrite false refuses an existing file and keeps it", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "f");
    writeFileAtomic(path, "first", 0o644, { overwrite: false });
    assert.throws(
      () => writeFileAtomic(path, "second", 0o644, { overwrite: false }),
      Deno.errors.AlreadyExists,
    );
    assert.equal(Deno.readTextFileSync(path), "first");
    assert.deepEqual(names(dir), ["f"]);
  });
});

Deno.test("writeFileAtomic() that fails leaves the old file and no temporary file", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "f");
    writeFileAtomic(path, "old", 0o644);
    Deno.mkdirSync(join(dir, "d"));
    Deno.writeTextFileSync(join(dir, "d", "x"), "");
    assert.throws(() => writeFileAtomic(join(dir, "d"), "new", 0o644)); // a rename cannot replace a directory
    assert.deepEqual(names(dir), ["d", "f"]);
    assert.equal(Deno.readTextFileSync(path), "old");
  });
});

Deno.test("writeFileAtomic() replaces a symlink at the path itself and never writes through it", async () => {
  await withTempDir((dir) => {
    const target = join(dir, "target");
    Deno.writeTextFileSync(target, "kept", { mode: 0o600 });
    Deno.symlinkSync(target, join(dir, "f"));
    writeFileAtomic(join(dir, "f"), "new", 0o644);
    assert.ok(Deno.lstatSync(join(dir, "f")).isFile);
    assert.equal(Deno.readTextFileSync(join(dir, "f")), "new");
    assert.equal(Deno.readTextFileSync(target), "kept");
    assert.equal(Deno.statSync(target).mode! & 0o777, 0o600);
  });
});

Deno.test("isTempFileName() recognises writeFileAtomic's temporary names only", () => {
  assert.ok(isTempFileName(".index.json.tmp-123-abcdef"));
  assert.ok(!isTempFileName("index.json"));
  assert.ok(!isTempFileName(".hidden"));
});

Deno.test("acquireStateLock() records the holder and clears the record on release", async () => {
  await withTempDir(async (dir) => {
    {
      using lock = await acquireStateLock(dir, { wait: false, command: "policy apply" });
      const holder = readHolder(lock.path);
      assert.equal(holder.pid, Deno.pid);
      assert.equal(holder.command, "policy apply");
    }
    assert.equal(Deno.readTextFileSync(join(dir, "lock")), "");
  });
});

Deno.test("acquireStateLock() without waiting fails clearly while another command holds it", async () => {
  await withTempDir(async (dir) => {
    using _held = await acquireStateLock(dir, { wait: false, command: "policy apply" });
    await assert.rejects(
      acquireStateLock(dir, { wait: false, command: "policy rollback" }),
      (error: unknown) => {
        assert.ok(error instanceof StateLockedError);
        assert.equal(error.holder.pid, Deno.pid);
        assert.match(
          error.message,
          new RegExp(`^The state lock .*/lock is held by pid ${Deno.pid} \\(policy apply\\): try again`),
        );
        return true;
      },
    );
  });
});

Deno.test("acquireStateLock() with waiting says whom it waits for and gets the lock when released", async () => {
  await withTempDir(async (dir) => {
    const first = await acquireStateLock(dir, { wait: false, command: "policy apply" });
    const waited: LockHolder[] = [];
    const second = acquireStateLock(dir, {
      wait: true,
      command: "policy rollback",
      onWait: (h) => waited.push(h),
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(waited.length, 1);
    assert.equal(waited[0]?.command, "policy apply");
    first[Symbol.dispose]();
    using lock = await second;
    assert.equal(readHolder(lock.path).command, "policy rollback");
  });
});

Deno.test("acquireStateLock() gives up after timeoutMs, naming the holder's pid and command", async () => {
  await withTempDir(async (dir) => {
    using _held = await acquireStateLock(dir, { wait: false, command: "policy apply" });
    const started = performance.now();
    await assert.rejects(
      acquireStateLock(dir, { wait: true, command: "policy rollback", timeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof StateLockedError);
        assert.equal(error.waitedMs, 300);
        assert.equal(
          error.message,
          `Gave up after waiting 300ms: the state lock ${join(dir, "lock")} is held by pid ${Deno.pid} ` +
            "(policy apply); try again when it has finished, or wait longer with --lock-timeout",
        );
        return true;
      },
    );
    const waited = performance.now() - started;
    assert.ok(waited >= 290 && waited < 2000, `waited ${waited} ms`);
  });
});

Deno.test("acquireStateLock() stops waiting when its signal aborts", async () => {
  await withTempDir(async (dir) => {
    using _held = await acquireStateLock(dir, { wait: false, command: "policy apply" });
    const stopping = new AbortController();
    const waiting = acquireStateLock(dir, { wait: true, command: "run", signal: stopping.signal });
    setTimeout(() => stopping.abort(new Error("the agent is stopping")), 50);
    await assert.rejects(waiting, /the agent is stopping/);
  });
});

Deno.test("acquireStateLock() makes the state directory 0700 and the lock file 0600", async () => {
  await withTempDir(async (dir) => {
    const stateDir = join(dir, "state");
    using lock = await acquireStateLock(stateDir, { wait: false, command: "policy apply" });
    assert.equal(Deno.statSync(stateDir).mode! & 0o777, 0o700);
    assert.equal(Deno.statSync(lock.path).mode! & 0o777, 0o600);
  });
});

Deno.test("acquireStateLock() is free again after its holder released it", async () => {
  await withTempDir(async (dir) => {
    (await acquireStateLock(dir, { wait: false, command: "a" }))[Symbol.dispose]();
    using _again = await acquireStateLock(dir, { wait: false, command: "b" });
  });
});

Deno.test("readHolder() treats a missing or half-written record as unknown", async () => {
  await withTempDir((dir) => {
    assert.deepEqual(readHolder(join(dir, "nothing")), {});
    Deno.writeTextFileSync(join(dir, "lock"), '{"pid":12');
    assert.deepEqual(readHolder(join(dir, "lock")), {});
    Deno.writeTextFileSync(join(dir, "lock"), '{"pid":"x","command":"policy apply"}');
    assert.deepEqual(readHolder(join(dir, "lock")), { command: "policy apply" });
  });
});

Deno.test("StateLockedError names another aegisbpf command when the holder is unknown", () => {
  assert.match(
    new StateLockedError("/s/lock", {}).message,
    /^The state lock \/s\/lock is held by another aegisbpf command/,
  );
});
