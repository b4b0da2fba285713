/**
 * The agent's policy check process (lib/ops/prepare.ts) through the real program: what comes back over
 * the pipe is what the same check gives in process, and its errors keep their class (exit code) and text.
 */
import assert from "node:assert/strict";
import { InputError, RefusedError } from "../../lib/errors.ts";
import { applyInHelper, prepareHere, preparePolicy, type PrepareRequest } from "../../lib/ops/prepare.ts";

async function withDirs(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-prepare-" });
  try {
    Deno.mkdirSync(`${dir}/etc`);
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function request(dir: string, policyFile?: string): PrepareRequest {
  return {
    what: "agent",
    why: "start",
    configDir: `${dir}/etc`,
    stateDir: `${dir}/state`,
    ingress: ["lo"],
    requestedMode: "audit",
    ...policyFile !== undefined && { policyFile },
  };
}

const deny = Array.from({ length: 5_000 }, (_, i) => ({ cidr: `198.18.${i >> 8}.${i & 255}/32`, port: 443 }));
const POLICY = JSON.stringify({
  apiVersion: "aegisbpf.io/v1",
  kind: "Policy",
  metadata: { name: "over-the-pipe", version: 3 },
  spec: {
    mode: "enforce",
    network: {
      egress: {
        deny: [...deny, { id: "v6", cidr: "2001:db8::/32" }],
        allow: [{ id: "keep", cidr: "198.18.0.7/32" }],
        users: [{ uid: 1000, allowPorts: [443] }],
        nat64Prefixes: ["2001:db8:64::/96"],
      },
      bind: { deny: [{ port: 23 }] },
      ingress: { interfaces: ["lo"], deny: [{ cidr: "203.0.113.0/24", port: 22 }], failsafe: { port: 22 } },
    },
  },
});

Deno.test("the policy check process answers what the check gives in process, entries and names included", async () => {
  await withDirs(async (dir) => {
    Deno.writeTextFileSync(`${dir}/p.json`, POLICY);
    const asked = request(dir, `${dir}/p.json`);
    const [piped, here] = [await preparePolicy(asked), await prepareHere(asked)];
    assert.deepEqual(piped.input, here.input);
    assert.equal(piped.input.content, POLICY);
    assert.equal(piped.origin, "flag");
    assert.deepEqual(piped.plan, here.plan);
    assert.deepEqual(piped.rules.toJSON(), here.rules.toJSON());
    // --audit is the agent's floor in the kernel's forced-audit word; the plan keeps the policy's own mode.
    assert.equal(piped.plan.mode, "enforce", "--audit leaves the policy's mode");
    assert.deepEqual(piped.plan.ingress.interfaces.map((iface) => iface.name), ["lo"]);
    assert.equal(piped.rules.name(5_000), "network.egress.deny[4999]");
    assert.equal(piped.plan.encodedNet?.egressRules, 5_002);
  });
});

Deno.test("the policy check process gives back bad input and refusals as such, with their messages", async () => {
  await withDirs(async (dir) => {
    Deno.writeTextFileSync(
      `${dir}/bad.yaml`,
      "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: b, version: 1 }\nspec:\n  mode: sometimes\n",
    );
    const bad = await preparePolicy(request(dir, `${dir}/bad.yaml`)).catch((error) => error);
    assert.ok(bad instanceof InputError, String(bad));
    assert.match(bad.message, /bad\.yaml:5:9: spec\.mode: /);
    assert.deepEqual(bad.position?.file, `${dir}/bad.yaml`);
    const missing = await preparePolicy(request(dir, `${dir}/none.yaml`)).catch((error) => error);
    assert.ok(missing instanceof InputError);
    assert.match(missing.message, /none\.yaml: no such file/);
    // Ingress dropping by default with no failsafe and no SSH allow: a lock-out risk, refused.
    Deno.writeTextFileSync(
      `${dir}/lockout.yaml`,
      `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: l, version: 1 }
spec:
  mode: enforce
  network: { ingress: { interfaces: [lo], default: drop } }
`,
    );
    const refused = await preparePolicy(request(dir, `${dir}/lockout.yaml`)).catch((error) => error);
    assert.ok(refused instanceof RefusedError, String(refused));
    assert.match(refused.message, /lockout\.yaml/);
  });
});

Deno.test("the policy check process and the API's apply refuse 16 MiB of [ with a position, in seconds", async () => {
  await withDirs(async (dir) => {
    const bomb = "[".repeat(16 * 1024 * 1024);
    Deno.writeTextFileSync(`${dir}/bomb.json`, bomb);
    const started = performance.now();
    const fromFile = await preparePolicy(request(dir, `${dir}/bomb.json`)).catch((error) => error);
    assert.ok(fromFile instanceof InputError, String(fromFile));
    assert.match(fromFile.message, /bomb\.json:1:32: nesting is too deep/);
    const where = { bpffs: `${dir}/bpffs`, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    const fromApi = await applyInHelper(where, bomb, "api").catch((error) => error);
    assert.ok(fromApi instanceof InputError, String(fromApi));
    assert.match(fromApi.message, /^api:1:32: nesting is too deep/);
    // Before the text was bounded, each took about 50 s and died with V8 out of memory.
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < 20, `${seconds} s`);
  });
});
