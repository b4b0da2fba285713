import assert from "node:assert/strict";
import { MAX_FETCH_BYTES, readApplyConfig, readRawInput } from "./apply_source.ts";

const URL_ = "https://policy.example/p.yaml";

Deno.test("readRawInput() fetches an https URL and keeps the exact bytes", async () => {
  const fetch = (() => Promise.resolve(new Response("kind: Policy\n"))) as typeof globalThis.fetch;
  const input = await readRawInput(URL_, { fetch });
  assert.equal(input.source, URL_);
  assert.equal(input.text, "kind: Policy\n");
  assert.deepEqual(input.bytes, new TextEncoder().encode("kind: Policy\n"));
});

Deno.test("readRawInput() refuses plain http, HTTP errors, oversized bodies and slow servers as bad input", async () => {
  await assert.rejects(readRawInput("http://policy.example/p.yaml"), /only https URLs are fetched/);
  const status = (() => Promise.resolve(new Response("no", { status: 404 }))) as typeof fetch;
  await assert.rejects(readRawInput(URL_, { fetch: status }), /^InputError: .*fetch failed: HTTP 404/);
  const huge = new Uint8Array(MAX_FETCH_BYTES + 1);
  const big = (() => Promise.resolve(new Response(huge))) as typeof fetch;
  await assert.rejects(readRawInput(URL_, { fetch: big }), /larger than \d+ bytes; not fetched/);
  const slow = ((_url: URL, init: RequestInit) =>
    new Promise((_resolve, reject) => {
      init.signal?.addEventListener("abort", () => reject(init.signal?.reason));
    })) as typeof fetch;
  await assert.rejects(
    readRawInput(URL_, { fetch: slow, timeoutMs: 50 }),
    /fetch failed: no answer within 0\.05 s/,
  );
});

Deno.test("readApplyConfig() reads requireSignature, keeps other keys, and rejects a wrong type", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.deepEqual(readApplyConfig(dir), { requireSignature: false });
    Deno.writeTextFileSync(`${dir}/config.yaml`, "requireSignature: true\nother: 1\n");
    assert.deepEqual(readApplyConfig(dir), { requireSignature: true });
    Deno.writeTextFileSync(`${dir}/config.yaml`, "requireSignature: yes please\n");
    assert.throws(() => readApplyConfig(dir), /config\.yaml: requireSignature: /);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
