import assert from "node:assert/strict";
import {
  canonicalHost,
  domainKey,
  hostCovers,
  hostKey,
  hostProblem,
  patternKey,
  patternShapes,
} from "./host_name.ts";

Deno.test("hostProblem() takes names and wildcards over a domain", () => {
  for (
    const good of ["api.example.com", "API.Example.COM.", "*.test.example", "localhost", "a-1.b2.example"]
  ) {
    assert.equal(hostProblem(good), undefined, good);
  }
});

Deno.test("hostProblem() refuses *.*, empty labels, long labels and names, misplaced wildcards and non-LDH", () => {
  const cases: [string, RegExp][] = [
    ["*.*", /wildcard past the first label/],
    ["*", /covers every name/],
    ["*.com", /whole top-level domain/],
    ["a..example.com", /empty label/],
    [".example.com", /empty label/],
    ["", /not empty/],
    [`${"a".repeat(64)}.example.com`, /label of 64 bytes/],
    [`${"abcdefghi.".repeat(25)}example.com`, /at most 253/],
    ["api.*.example.com", /wildcard past the first label/],
    ["a*.example.com", /never part of one/],
    ["api_v2.example.com", /outside letters, digits and "-"/],
    ["bücher.example", /xn-- form/],
    ["-api.example.com", /starts or ends with "-"/],
  ];
  for (const [text, expected] of cases) assert.match(hostProblem(text) ?? "accepted", expected, text);
});

Deno.test("hostProblem() takes a name of 253 bytes and refuses one of 254", () => {
  const label = "a".repeat(63);
  const name253 = [label, label, label, "a".repeat(61)].join(".");
  assert.equal(name253.length, 253);
  assert.equal(hostProblem(name253), undefined);
  assert.equal(hostProblem(`${name253}.`), undefined, "a trailing dot is not counted");
  assert.match(hostProblem(`${name253}a`) ?? "", /254 bytes long/);
});

Deno.test("hostCovers() matches a wildcard's subdomains at any depth, never the domain itself", () => {
  assert.ok(hostCovers("*.example.com", "a.example.com"));
  assert.ok(hostCovers("*.example.com", "A.B.Example.com."));
  assert.ok(!hostCovers("*.example.com", "example.com"));
  assert.ok(!hostCovers("*.example.com", "badexample.com"));
  assert.ok(hostCovers("api.example.com", "API.example.com."));
  assert.ok(!hostCovers("api.example.com", "x.api.example.com"));
});

Deno.test("canonicalHost() lower-cases and drops the trailing dot; hostKey() is FNV-1a 64 of it", () => {
  assert.equal(canonicalHost("Api.Example.COM."), "api.example.com");
  assert.equal(hostKey(""), 0xcbf29ce484222325n);
  assert.equal(hostKey("a"), 0xaf63dc4c8601ec8cn);
  assert.notEqual(hostKey("example.com"), hostKey("example.org"));
});

Deno.test("domainKey() folds the labels' FNV-1a from the last label: order and label bounds count", () => {
  // One label: FNV-1a of it, folded into the offset basis once (what the kernel computes for n = 1).
  const one = ((0xcbf29ce484222325n ^ hostKey("com")) * 0x100000001b3n) & 0xffffffffffffffffn;
  assert.equal(domainKey("com"), one ^ (one >> 32n));
  assert.notEqual(domainKey("example.com"), domainKey("com.example"));
  assert.notEqual(domainKey("ab.c"), domainKey("a.bc"), "where a label ends is part of the key");
  assert.notEqual(domainKey("example.com"), hostKey("example.com"));
});

Deno.test("patternKey() keys a name by hostKey and a wildcard by its domain's domainKey", () => {
  assert.deepEqual(patternKey("api.example.com"), { wildcard: false, key: hostKey("api.example.com") });
  assert.deepEqual(patternKey("*.example.com"), { wildcard: true, key: domainKey("example.com") });
});

Deno.test("patternShapes() says whether a name is exact and which domain label counts wildcards have", () => {
  assert.deepEqual(patternShapes([]), { exact: false, wildcardLabels: 0 });
  assert.deepEqual(patternShapes(["*.a.b.example", "*.example.com", "x.example"]), {
    exact: true,
    wildcardLabels: 1 << 2 | 1 << 3,
  });
});
