import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { InputError } from "../errors.ts";
import {
  appendHistory,
  type AppendStep,
  CorruptStateError,
  currentEntry,
  findEntry,
  HISTORY_KEEP,
  historyDir,
  type HistoryEntry,
  type HistoryOutcome,
  listHistory,
  type NewHistoryEntry,
  previousEntry,
  raiseVersionCounter,
  readEntryContent,
  readVersionCounter,
  setOutcome,
} from "./history.ts";

async function withStateDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-history-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

function applied(content: string, outcome: HistoryOutcome = "applied"): NewHistoryEntry {
  return {
    source: "/etc/aegisbpf/policy.yaml",
    kind: "policy",
    name: "web-baseline",
    version: 1,
    sha256: sha(`policy:${content}`),
    uid: 0,
    outcome,
    content,
    time: new Date("2026-06-01T12:00:00Z"),
  };
}

const contentFiles = (dir: string) =>
  [...Deno.readDirSync(join(historyDir(dir), "content"))].map((e) => e.name);
const allFiles = (dir: string) =>
  [...Deno.readDirSync(historyDir(dir))].flatMap((e) =>
    e.isDirectory ? contentFiles(dir).map((name) => `content/${name}`) : [e.name]
  ).sort();

/** Every listed entry has its content: what a reader after a crash relies on. */
function assertConsistent(dir: string) {
  for (const entry of listHistory(dir)) readEntryContent(dir, entry);
}

Deno.test("appendHistory() records entries with increasing seq and their exact content", async () => {
  await withStateDir((dir) => {
    const first = appendHistory(dir, applied("one\n"));
    const second = appendHistory(dir, {
      ...applied("two\r\n\u00e9"),
      kind: "bundle",
      keyid: "ab".repeat(32),
    });
    assert.equal(first.seq, 1);
    assert.equal(second.seq, 2);
    assert.equal(first.time, "2026-06-01T12:00:00.000Z");
    assert.equal(first.contentSha256, sha("one\n"));
    assert.equal(first.keyid, undefined);
    assert.deepEqual(listHistory(dir), [first, second]);
    assert.equal(readEntryContent(dir, second), "two\r\n\u00e9");
    assert.equal(Deno.statSync(join(historyDir(dir), "index.json")).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(historyDir(dir)).mode! & 0o777, 0o700);
  });
});

Deno.test("appendHistory() takes the content's digest from the caller when it has one, and stores under it", async () => {
  await withStateDir((dir) => {
    const text = "spec: {}\n\u00e9";
    const entry = appendHistory(dir, { ...applied(text), sha256: sha(text), contentSha256: sha(text) });
    assert.equal(entry.contentSha256, sha(text));
    assert.equal(readEntryContent(dir, entry), text);
    assert.deepEqual(contentFiles(dir), [sha(text)]);
    assertConsistent(dir);
  });
});

Deno.test("listHistory() of a state directory with no history is empty", async () => {
  await withStateDir((dir) => assert.deepEqual(listHistory(dir), []));
});

Deno.test("appendHistory() keeps the last 20 entries and prunes content nothing refers to", async () => {
  await withStateDir((dir) => {
    for (let i = 1; i <= 30; i++) appendHistory(dir, applied(`policy ${i}`));
    const entries = listHistory(dir);
    assert.equal(entries.length, HISTORY_KEEP);
    assert.deepEqual(entries.map((e) => e.seq), Array.from({ length: 20 }, (_, i) => i + 11));
    assert.deepEqual(contentFiles(dir).sort(), entries.map((e) => e.contentSha256).sort());
    assert.equal(appendHistory(dir, applied("policy 31")).seq, 31);
  });
});

Deno.test("appendHistory() keeps the current and previous policies however old, so rollback still works", async () => {
  await withStateDir((dir) => {
    appendHistory(dir, applied("old"));
    appendHistory(dir, applied("current"));
    for (let i = 0; i < 25; i++) appendHistory(dir, applied(`broken ${i}`, "failed"));
    const entries = listHistory(dir);
    assert.equal(entries.length, HISTORY_KEEP + 2);
    assert.equal(readEntryContent(dir, currentEntry(entries)!), "current");
    assert.equal(readEntryContent(dir, previousEntry(entries)!), "old");
  });
});

Deno.test("appendHistory() stores the same content once and keeps it while any kept entry refers to it", async () => {
  await withStateDir((dir) => {
    appendHistory(dir, applied("same"));
    for (let i = 0; i < HISTORY_KEEP; i++) appendHistory(dir, applied(i % 2 ? "same" : `other ${i}`));
    const entries = listHistory(dir);
    assert.ok(!entries.some((e) => e.seq === 1));
    assert.equal(readEntryContent(dir, entries.at(-1)!), "same");
    assert.equal(new Set(contentFiles(dir)).size, contentFiles(dir).length);
  });
});

Deno.test("currentEntry() is the newest policy in force; failed, pending and canary-rolled-back are not", () => {
  const entries = ["applied", "failed", "canary-rolled-back", "pending"].map((outcome, i) =>
    entry(i + 1, `p${i}`, outcome as HistoryOutcome)
  );
  assert.equal(currentEntry(entries)?.seq, 1);
  assert.equal(currentEntry([...entries, entry(5, "p5", "canary")])?.seq, 5);
  assert.equal(currentEntry([]), undefined);
});

Deno.test("previousEntry() skips failed outcomes and the policy already in force", () => {
  const entries = [
    entry(1, "a", "applied"),
    entry(2, "b", "canary-kept"),
    entry(3, "c", "failed"),
    entry(4, "d", "canary-rolled-back"),
    entry(5, "b", "applied"),
    entry(6, "e", "applied"),
    entry(7, "e", "rolled-back"),
  ];
  assert.equal(previousEntry(entries)?.seq, 5);
  assert.equal(previousEntry(entries.slice(0, 5))?.seq, 1);
  assert.equal(previousEntry(entries.slice(0, 1)), undefined);
});

Deno.test("findEntry() finds by seq or by a sha256 prefix of 8 or more hex digits", () => {
  const entries = [
    entry(1, "a", "applied"),
    entry(2, "b", "applied"),
    entry(3, "a", "failed"),
    entry(4, "a", "applied"),
  ];
  assert.equal(findEntry(entries, "2").seq, 2);
  assert.equal(findEntry(entries, sha("a").slice(0, 8)).seq, 4);
  assert.equal(findEntry(entries, sha("b").toUpperCase()).seq, 2);
  assert.equal(findEntry([entry(1, "x", "failed")], sha("x").slice(0, 10)).seq, 1);
});

Deno.test("findEntry() explains what it cannot find, and refuses short or ambiguous references", () => {
  const entries = [entry(1, "a", "applied")];
  assert.throws(() => findEntry(entries, "9"), errorLike(InputError, /^No history entry with seq 9$/));
  assert.throws(
    () => findEntry(entries, "deadbeef"),
    errorLike(InputError, /^No history entry with sha256 deadbeef$/),
  );
  assert.throws(() => findEntry(entries, "abc"), errorLike(InputError, /^Invalid history reference "abc"/));
  assert.throws(() => findEntry(entries, "HEAD~1"), errorLike(InputError, /^Invalid history reference/));
  const twins = [{ ...entry(1, "a", "applied"), sha256: "0".repeat(64) }, {
    ...entry(2, "b", "applied"),
    sha256: "0".repeat(63) + "1",
  }];
  assert.throws(
    () => findEntry(twins, "00000000"),
    errorLike(InputError, /^Sha256 prefix 00000000 is ambiguous/),
  );
});

Deno.test("setOutcome() changes one entry's outcome and nothing else", async () => {
  await withStateDir((dir) => {
    const pending = appendHistory(dir, applied("canary", "canary"));
    assert.deepEqual(setOutcome(dir, pending.seq, "canary-rolled-back"), {
      ...pending,
      outcome: "canary-rolled-back",
    });
    assert.deepEqual(listHistory(dir), [{ ...pending, outcome: "canary-rolled-back" }]);
    assert.throws(() => setOutcome(dir, 99, "applied"), errorLike(InputError, /^No history entry 99 in /));
  });
});

Deno.test("a crash before any step of an append leaves a history that lists consistently", async () => {
  for (const step of ["content", "index", "prune"] satisfies AppendStep[]) {
    await withStateDir((dir) => {
      for (let i = 1; i <= HISTORY_KEEP; i++) appendHistory(dir, applied(`policy ${i}`));
      const before = listHistory(dir);
      const crash = new Error(`killed before ${step}`);
      assert.throws(() =>
        appendHistory(dir, applied("new"), {
          onStep: (at) => {
            if (at === step) throw crash;
          },
        }), crash);
      const after = listHistory(dir);
      assert.deepEqual(after, step === "prune" ? [...before.slice(1), after.at(-1)] : before, step);
      assertConsistent(dir);
      const next = appendHistory(dir, applied("next"));
      assert.equal(next.seq, (after.at(-1)?.seq ?? 0) + 1);
      assertConsistent(dir);
      assert.deepEqual(contentFiles(dir).sort(), listHistory(dir).map((e) => e.contentSha256).sort(), step);
    });
  }
});

Deno.test("a temporary file left by a kill -9 mid-write is ignored by readers and removed by the next append", async () => {
  await withStateDir((dir) => {
    appendHistory(dir, applied("one"));
    const strayIndex = join(historyDir(dir), ".index.json.tmp-4242-abcdef");
    const strayContent = join(historyDir(dir), "content", `.${"f".repeat(64)}.tmp-4242-abcdef`);
    Deno.writeTextFileSync(strayIndex, '{"format":1,"entries":[');
    Deno.writeTextFileSync(strayContent, "half a pol");
    assert.equal(listHistory(dir).length, 1);
    assertConsistent(dir);
    appendHistory(dir, applied("two"));
    assert.deepEqual(allFiles(dir), ["content/" + sha("one"), "content/" + sha("two"), "index.json"].sort());
  });
});

Deno.test("a corrupt index is an error naming the file, not a crash", async () => {
  await withStateDir((dir) => {
    appendHistory(dir, applied("one"));
    const index = join(historyDir(dir), "index.json");
    Deno.writeTextFileSync(index, "{not json");
    assert.throws(
      () => listHistory(dir),
      errorLike(CorruptStateError, new RegExp(`^Corrupt state file ${index}: not valid JSON`)),
    );
    Deno.writeTextFileSync(index, JSON.stringify({ format: 1, entries: [{ seq: "one" }] }));
    assert.throws(() => listHistory(dir), errorLike(CorruptStateError, /index\.json: entries\.0\.seq: /));
    Deno.writeTextFileSync(index, JSON.stringify({ format: 2, entries: [] }));
    assert.throws(() => listHistory(dir), errorLike(CorruptStateError, /index\.json: format: /));
    assert.throws(() => appendHistory(dir, applied("two")), CorruptStateError);
  });
});

Deno.test("readEntryContent() refuses content that is missing or no longer matches its sha256", async () => {
  await withStateDir((dir) => {
    const entry = appendHistory(dir, applied("one"));
    const file = join(historyDir(dir), "content", entry.contentSha256);
    Deno.writeTextFileSync(file, "tampered");
    assert.throws(
      () => readEntryContent(dir, entry),
      errorLike(CorruptStateError, /does not match its sha256/),
    );
    Deno.removeSync(file);
    assert.throws(
      () => readEntryContent(dir, entry),
      errorLike(CorruptStateError, /content of history entry 1 is missing/),
    );
  });
});

Deno.test("the version counter starts at 0 and only ever increases", async () => {
  await withStateDir((dir) => {
    assert.equal(readVersionCounter(dir), 0);
    assert.equal(raiseVersionCounter(dir, 7), 7);
    assert.equal(raiseVersionCounter(dir, 3), 7);
    assert.equal(readVersionCounter(dir), 7);
    assert.equal(Deno.readTextFileSync(join(dir, "version_counter")), "7\n");
    assert.equal(raiseVersionCounter(dir, 8), 8);
    assert.throws(() => raiseVersionCounter(dir, 1.5), RangeError);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["version_counter"]);
  });
});

Deno.test("a corrupt version counter is an error naming the file", async () => {
  await withStateDir((dir) => {
    Deno.writeTextFileSync(join(dir, "version_counter"), "seven");
    assert.throws(
      () => readVersionCounter(dir),
      errorLike(CorruptStateError, /version_counter: expected a non-negative integer/),
    );
    assert.throws(() => raiseVersionCounter(dir, 9), CorruptStateError);
  });
});

function entry(seq: number, policy: string, outcome: HistoryOutcome): HistoryEntry {
  return {
    seq,
    time: "2026-06-01T12:00:00.000Z",
    uid: 0,
    source: "p.yaml",
    kind: "policy",
    name: "p",
    version: 1,
    sha256: sha(policy),
    contentSha256: sha(`content ${policy}`),
    outcome,
  };
}

function errorLike(errorClass: new (...args: never[]) => Error, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  };
}

Deno.test("content applied again is not written again; a stored file with other bytes or mode is replaced", async () => {
  await withStateDir((dir) => {
    const first = appendHistory(dir, applied("a"));
    const file = join(historyDir(dir), "content", first.contentSha256);
    const inode = Deno.statSync(file).ino;
    appendHistory(dir, applied("b"));
    const again = appendHistory(dir, applied("a", "rolled-back"));
    assert.equal(again.contentSha256, first.contentSha256);
    assert.equal(Deno.statSync(file).ino, inode, "the stored file is kept as it is");
    assert.equal(readEntryContent(dir, again), "a");

    // The same length, other bytes: the next append of that content writes it anew.
    Deno.writeTextFileSync(file, "x");
    appendHistory(dir, applied("a", "rolled-back"));
    assert.notEqual(Deno.statSync(file).ino, inode);
    assert.equal(Deno.readTextFileSync(file), "a");

    // The right bytes with a wider mode: replaced by a private file.
    const replaced = Deno.statSync(file).ino;
    Deno.chmodSync(file, 0o644);
    appendHistory(dir, applied("a", "rolled-back"));
    assert.notEqual(Deno.statSync(file).ino, replaced);
    assert.equal(Deno.statSync(file).mode! & 0o777, 0o600);
    assertConsistent(dir);
  });
});
