// This module imports nothing that loads the YAML parser up front (not lib/policy/parse.ts): the first tests
// see it unloaded, as `policy apply` does at start-up.
import assert from "node:assert/strict";
import { parsePolicySource, PolicyError } from "./parse_text.ts";
import { withYaml, yaml, yamlLoaded, YamlNotLoaded } from "./yaml.ts";

const JSON_POLICY = JSON.stringify(
  {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "p", version: 1 },
    spec: { mode: "enforce", network: { egress: { deny: [{ cidr: "192.0.2.1/32" }] } } },
  },
  null,
  2,
);
const YAML_POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: p, version: 1 }
spec:
  mode: enforce
  network: { egress: { deny: [{ cidr: 192.0.2.1/32 }] } }
`;

Deno.test("clean JSON parses without the YAML parser; YAML text and a located problem ask for it", () => {
  assert.equal(yamlLoaded(), false);
  const parsed = parsePolicySource(JSON_POLICY, "p.json");
  assert.equal(parsed.policy.spec.network?.egress?.deny?.[0]?.cidr, "192.0.2.1/32");
  assert.equal(yamlLoaded(), false);
  assert.throws(() => yaml(), YamlNotLoaded);
  assert.throws(() => parsePolicySource(YAML_POLICY, "p.yaml"), YamlNotLoaded);
  // A schema problem in clean JSON is located through the YAML document.
  assert.throws(() => parsePolicySource(JSON_POLICY.replace('"enforce"', '"loud"'), "p.json"), YamlNotLoaded);
  assert.equal(yamlLoaded(), false);
});

Deno.test("withYaml() loads the YAML parser and runs the work again: YAML parses, problems name FILE:LINE:COL", async () => {
  let runs = 0;
  const parsed = await withYaml(() => (runs++, parsePolicySource(YAML_POLICY, "p.yaml")));
  assert.equal(runs, 2);
  assert.equal(yamlLoaded(), true);
  assert.equal(parsed.policy.spec.network?.egress?.deny?.[0]?.cidr, "192.0.2.1/32");
  const error = await withYaml(() => parsePolicySource(JSON_POLICY.replace('"enforce"', '"loud"'), "p.json"))
    .catch((error) => error);
  assert.ok(error instanceof PolicyError);
  assert.match(error.message, /^p\.json:9:13: spec\.mode: "loud" is not valid/);
  // Loaded once, the work runs once.
  runs = 0;
  await withYaml(() => (runs++, parsePolicySource(YAML_POLICY, "p.yaml")));
  assert.equal(runs, 1);
  await assert.rejects(withYaml(() => parsePolicySource("a: [", "bad.yaml")), /^PolicyError: bad\.yaml:1:/);
});
