import assert from "node:assert/strict";
import { RefusedError } from "../errors.ts";
import { withYaml, YamlNotLoaded } from "../policy/yaml.ts";
import { MAX_FETCH_BYTES, MAX_REDIRECTS, readApplyConfig, readRawInput } from "./apply_source.ts";

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

Deno.test("readApplyConfig() reads requireSignature, keeps other keys, and rejects a wrong type", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.deepEqual(readApplyConfig(dir), { requireSignature: false });
    Deno.writeTextFileSync(`${dir}/config.yaml`, "requireSignature: true\nother: 1\n");
    // Nothing in this test module loads the YAML parser up front: a config file is what needs it.
    assert.throws(() => readApplyConfig(dir), YamlNotLoaded);
    assert.deepEqual(await withYaml(() => readApplyConfig(dir)), { requireSignature: true });
    Deno.writeTextFileSync(`${dir}/config.yaml`, "requireSignature: yes please\n");
    assert.throws(() => readApplyConfig(dir), /config\.yaml: requireSignature: /);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A fetch that answers each URL from `routes` (status and Location) and records what it was asked. */
function redirecting(routes: Record<string, [number, string?]>) {
  const asked: [string, RequestRedirect | undefined][] = [];
  const fetch = ((input: URL, init?: RequestInit) => {
    asked.push([String(input), init?.redirect]);
    const [status, location] = routes[String(input)] ?? [200];
    const headers: Record<string, string> = location === undefined ? {} : { location };
    return Promise.resolve(new Response(status === 200 ? "kind: Policy\n" : "moved", { status, headers }));
  }) as typeof globalThis.fetch;
  return { fetch, asked };
}

Deno.test("readRawInput() follows redirects from https to https itself, relative ones too", async () => {
  const { fetch, asked } = redirecting({
    "https://policy.example/p.yaml": [301, "https://mirror.example/a/p.yaml"],
    "https://mirror.example/a/p.yaml": [307, "../b/p.yaml"],
  });
  const input = await readRawInput("https://policy.example/p.yaml", { fetch });
  assert.equal(input.text, "kind: Policy\n");
  assert.deepEqual(asked, [
    ["https://policy.example/p.yaml", "manual"],
    ["https://mirror.example/a/p.yaml", "manual"],
    ["https://mirror.example/b/p.yaml", "manual"],
  ]);
});

Deno.test("readRawInput() refuses a redirect from https to http with exit 3, naming both URLs", async () => {
  const { fetch, asked } = redirecting({
    "https://policy.example/p.yaml": [302, "https://policy.example/q.yaml"],
    "https://policy.example/q.yaml": [308, "http://evil.example/p.yaml"],
  });
  await assert.rejects(readRawInput("https://policy.example/p.yaml", { fetch }), (error: unknown) => {
    assert.ok(error instanceof RefusedError);
    assert.equal(
      error.message,
      "Refused https://policy.example/p.yaml: https://policy.example/q.yaml redirects to " +
        "http://evil.example/p.yaml, which is not https; give the https URL of the policy itself",
    );
    return true;
  });
  assert.equal(asked.length, 2, "the http URL was never fetched");
});

Deno.test("readRawInput() stops after MAX_REDIRECTS redirects", async () => {
  const routes: Record<string, [number, string]> = {};
  for (let i = 0; i < 20; i++) routes[`https://policy.example/${i}`] = [302, `/${i + 1}`];
  const { fetch, asked } = redirecting(routes);
  await assert.rejects(
    readRawInput("https://policy.example/0", { fetch }),
    /^InputError: https:\/\/policy\.example\/0: fetch failed: more than 5 redirects$/,
  );
  assert.equal(asked.length, MAX_REDIRECTS + 1);
});
