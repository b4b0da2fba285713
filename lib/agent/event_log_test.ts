import assert from "node:assert/strict";
import { EventLog } from "./event_log.ts";

Deno.test("EventLog appends JSON lines and rotates to .1 before a line would pass the limit", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/events.jsonl`;
    const line = (n: number) => ({ n, pad: "x".repeat(40) }); // 57 bytes a line with its newline
    {
      using log = new EventLog(path, 200);
      for (let n = 1; n <= 3; n++) log.append(line(n));
      assert.equal(Deno.statSync(path).size, 171);
      log.append(line(4));
      log.append(line(5));
      for (let n = 6; n <= 8; n++) log.append(line(n));
    }
    const read = (file: string) => Deno.readTextFileSync(file).trim().split("\n").map((l) => JSON.parse(l).n);
    assert.deepEqual(read(`${path}.1`), [4, 5, 6]);
    assert.deepEqual(read(path), [7, 8]);
    // A new log on an existing file goes on appending, counting what is there.
    using again = new EventLog(path, 200);
    again.append(line(9));
    again.append(line(10));
    assert.deepEqual(read(`${path}.1`), [7, 8, 9]);
    assert.deepEqual(read(path), [10]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
