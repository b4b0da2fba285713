import assert from "node:assert/strict";
import { markerPath, readMarker } from "./break_glass_marker.ts";

function withMarker(content: string | "directory", fn: (configDir: string) => void): void {
  const configDir = Deno.makeTempDirSync();
  try {
    if (content === "directory") Deno.mkdirSync(markerPath(configDir));
    else Deno.writeTextFileSync(markerPath(configDir), content);
    fn(configDir);
  } finally {
    Deno.removeSync(configDir, { recursive: true });
  }
}

Deno.test("readMarker() reads no marker as none, and an empty one as a bare marker", () => {
  const configDir = Deno.makeTempDirSync();
  try {
    assert.equal(readMarker(configDir), undefined);
  } finally {
    Deno.removeSync(configDir, { recursive: true });
  }
  withMarker("", (configDir) => assert.deepEqual(readMarker(configDir), {}));
});

Deno.test("readMarker() keeps the valid fields of a marker and drops a TTL that is not a time", () => {
  withMarker('{"untilMs":"x","until":"2027-01-01T00:00:00.000Z","reason":"disk"}', (configDir) => {
    assert.deepEqual(readMarker(configDir), {
      reason: "disk",
      problem: 'untilMs "x" is not a time in epoch milliseconds (so no TTL)',
    });
  });
  withMarker('{"untilMs":1e300,"uid":"root"}', (configDir) => {
    assert.deepEqual(readMarker(configDir), {
      problem: 'untilMs 1e+300 is not a time in epoch milliseconds (so no TTL); uid "root" is not a user id',
    });
  });
  const untilMs = Date.now() + 60_000;
  const good = { reason: "r", since: "s", until: "u", untilMs, uid: 0 };
  withMarker(JSON.stringify(good), (configDir) => assert.deepEqual(readMarker(configDir), good));
});

Deno.test("readMarker() reads a marker that is not a JSON object, or cannot be read, as on with its problem", () => {
  withMarker("maintenance, ask bob", (configDir) => {
    assert.deepEqual(readMarker(configDir), { problem: "not JSON (a marker made by hand may be empty)" });
  });
  withMarker(
    "[1,2]",
    (configDir) => assert.deepEqual(readMarker(configDir), { problem: "not a JSON object" }),
  );
  withMarker("directory", (configDir) => {
    assert.match(readMarker(configDir)?.problem ?? "", /^cannot be read: /);
  });
});
