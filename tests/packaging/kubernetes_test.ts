/**
 * The manifests of packaging/kubernetes: every file parses as YAML and is listed by the kustomization;
 * the DaemonSet runs unprivileged with only the capabilities the systemd unit has (plus SYS_RESOURCE),
 * mounts what the agent needs from the node, probes with `aegisbpf health`, and the ConfigMap's policy
 * is one `aegisbpf policy validate` accepts.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { VERSION } from "../../lib/version.ts";
import { aegisbpf } from "../cli/cli.ts";
import { kustomize, type Manifest, parseStrict, readKustomization } from "./kustomize.ts";
import { directive, PACKAGING, readUnit, withTempDir } from "./unit_file.ts";

const DIR = `${PACKAGING}kubernetes/`;

/** Every YAML file under packaging/kubernetes/, relative to it. */
function yamlFiles(dir = DIR): string[] {
  return [...Deno.readDirSync(dir)].flatMap((e) =>
    e.isDirectory
      ? yamlFiles(join(dir, e.name))
      : e.name.endsWith(".yaml")
      ? [relative(DIR, join(dir, e.name))]
      : []
  ).sort();
}

let parsed: Manifest[] | undefined;

/** The manifests `kubectl apply -k packaging/kubernetes/` applies (the base). */
function manifests(): Manifest[] {
  parsed ??= kustomize(DIR);
  return parsed;
}

function only(kind: string): Manifest {
  const found = manifests().filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}`);
  return found[0]!;
}

function agentContainer(): Manifest {
  const containers = only("DaemonSet").spec.template.spec.containers as Manifest[];
  assert.equal(containers.length, 1);
  return containers[0]!;
}

Deno.test("every manifest parses as YAML, names its kind, and every file is a resource or patch of a kustomization", () => {
  const used = new Set<string>();
  for (const file of yamlFiles()) {
    for (const manifest of parseStrict(Deno.readTextFileSync(DIR + file), file)) {
      assert.equal(typeof manifest.apiVersion, "string", file);
      assert.equal(typeof manifest.kind, "string", file);
    }
    if (!file.endsWith("kustomization.yaml")) continue;
    const dir = join(DIR, file, "..");
    const kustomization = readKustomization(dir);
    for (const resource of kustomization.resources ?? []) used.add(relative(DIR, join(dir, resource)));
    for (const patch of kustomization.patches ?? []) used.add(relative(DIR, join(dir, patch.path)));
  }
  for (const file of yamlFiles()) {
    if (/^(overlays\/[a-z]+\/)?kustomization\.yaml$/.test(file)) continue; // what an operator applies
    const listed = used.has(file) || (file.endsWith("/kustomization.yaml") && used.has(join(file, "..")));
    assert.ok(listed, `${file} is in no kustomization`);
  }
  for (const manifest of manifests().filter((m) => m.kind !== "Namespace")) {
    assert.equal(manifest.metadata.namespace, "aegisbpf", manifest.kind);
  }
});

Deno.test("a YAML error or a duplicate key in a manifest fails the parse above (the check can fail)", () => {
  assert.throws(() => parseStrict("a: 1\na: 2\n", "dup.yaml"), /dup\.yaml: .*unique/i);
  assert.throws(() => parseStrict("a: [1\n", "open.yaml"), /open\.yaml/);
  assert.equal(yamlFiles().length >= 5, true);
});

Deno.test("the DaemonSet's container is unprivileged and adds only the agent's capabilities", () => {
  const security = agentContainer().securityContext;
  assert.equal(security.privileged, false);
  assert.equal(security.allowPrivilegeEscalation, false);
  assert.equal(security.readOnlyRootFilesystem, true);
  assert.deepEqual(security.capabilities.drop, ["ALL"]);
  // The systemd unit's set, in Kubernetes' names, plus SYS_RESOURCE (a pod cannot lift RLIMIT_MEMLOCK).
  const unit = directive(readUnit("aegisbpf.service"), "Service", "CapabilityBoundingSet").split(/\s+/)
    .map((cap) => cap.replace(/^CAP_/, ""));
  assert.deepEqual([...security.capabilities.add].sort(), [...unit, "SYS_RESOURCE"].sort());
  assert.equal(security.seccompProfile.type, "RuntimeDefault");
  assert.equal(security.appArmorProfile.type, "Unconfined");
});

Deno.test("the DaemonSet shares the node's pid and network namespaces and runs on every node", () => {
  const daemonSet = only("DaemonSet");
  const pod = daemonSet.spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.deepEqual(pod.tolerations, [{ operator: "Exists" }]);
  assert.equal(daemonSet.spec.updateStrategy.type, "RollingUpdate");
  assert.equal(daemonSet.spec.updateStrategy.rollingUpdate.maxUnavailable, 1);
  assert.deepEqual(daemonSet.spec.selector.matchLabels, daemonSet.spec.template.metadata.labels);
  assert.equal(agentContainer().image, `aegisbpf:${VERSION}`);
  assert.equal(daemonSet.metadata.labels["app.kubernetes.io/version"], VERSION);
});

/** mount path -> { hostPath, readOnly, propagation } of the agent's container. */
function hostMounts(): Map<
  string,
  { hostPath?: string; readOnly: boolean; propagation?: string; volume: Manifest }
> {
  const volumes = new Map(
    (only("DaemonSet").spec.template.spec.volumes as Manifest[]).map((volume) => [volume.name, volume]),
  );
  return new Map((agentContainer().volumeMounts as Manifest[]).map((mount) => {
    const volume = volumes.get(mount.name);
    assert.ok(volume, `volumeMount ${mount.name} has no volume`);
    return [mount.mountPath, {
      hostPath: volume.hostPath?.path,
      readOnly: mount.readOnly === true,
      propagation: mount.mountPropagation,
      volume,
    }];
  }));
}

Deno.test("the DaemonSet mounts bpffs, cgroup v2, securityfs, tracefs and the agent's directories from the node", () => {
  const mounts = hostMounts();
  const expect = (path: string, readOnly: boolean) => {
    const mount = mounts.get(path);
    assert.ok(mount, `${path} is not mounted`);
    assert.equal(mount.hostPath, path, `${path} must be the node's own`);
    assert.equal(mount.readOnly, readOnly, `${path} readOnly`);
    return mount;
  };
  // Pins outlive the pod; Bidirectional is refused by Kubernetes for an unprivileged container.
  assert.equal(expect("/sys/fs/bpf", false).propagation, "HostToContainer");
  expect("/sys/fs/cgroup", true);
  expect("/sys/kernel/security", true);
  expect("/sys/kernel/tracing", true);
  expect("/var/lib/aegisbpf", false);
  expect("/etc/aegisbpf", false);
  expect("/run/aegisbpf", false);
  expect("/var/lib/node_exporter/textfile_collector", false);
  const policy = mounts.get("/etc/aegisbpf-policy");
  assert.equal(policy?.volume.configMap?.name, only("ConfigMap").metadata.name);
  assert.equal(policy?.readOnly, true);
  for (const [path, mount] of mounts) {
    if (mount.propagation) assert.notEqual(mount.propagation, "Bidirectional", path);
  }
});

Deno.test("the DaemonSet's init container makes the state, config and keys directories 0700, with no capability", async () => {
  const spec = only("DaemonSet").spec.template.spec;
  const inits = spec.initContainers as Manifest[];
  assert.equal(inits.length, 1);
  const init = inits[0]!;
  assert.equal(init.image, agentContainer().image);
  assert.deepEqual(init.securityContext.capabilities, { drop: ["ALL"] });
  assert.equal(init.securityContext.privileged, false);
  assert.equal(init.securityContext.allowPrivilegeEscalation, false);
  const mounts = Object.fromEntries((init.volumeMounts as Manifest[]).map((m) => [m.name, m.mountPath]));
  const agentMounts = Object.fromEntries(
    (agentContainer().volumeMounts as Manifest[]).map((m) => [m.name, m.mountPath]),
  );
  assert.deepEqual(mounts, { state: agentMounts.state, config: agentMounts.config });
  // Its script, run on directories as kubelet makes them (0755), with the node's paths moved to a scratch root.
  const [shell, flag, script] = init.command as string[];
  assert.deepEqual([shell, flag], ["/bin/sh", "-c"]);
  await withTempDir("aegisbpf-init-", async (dir) => {
    for (const path of ["var/lib/aegisbpf", "etc/aegisbpf/keys"]) {
      Deno.mkdirSync(`${dir}/${path}`, { recursive: true, mode: 0o755 });
      Deno.chmodSync(`${dir}/${path}`, 0o755);
    }
    Deno.chmodSync(`${dir}/etc/aegisbpf`, 0o755);
    const moved = script!.replaceAll("/var/lib/aegisbpf", `${dir}/var/lib/aegisbpf`)
      .replaceAll("/etc/aegisbpf", `${dir}/etc/aegisbpf`);
    const result = await new Deno.Command("/bin/sh", { args: ["-c", moved], stderr: "piped" }).output();
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    for (const path of ["var/lib/aegisbpf", "etc/aegisbpf", "etc/aegisbpf/keys"]) {
      assert.equal(Deno.statSync(`${dir}/${path}`).mode! & 0o777, 0o700, path);
    }
  });
});

Deno.test("the DaemonSet's probes call `aegisbpf health`; readiness adds the ConfigMap's health-args", () => {
  const container = agentContainer();
  assert.deepEqual(container.startupProbe.exec.command, ["aegisbpf", "health"]);
  assert.deepEqual(container.livenessProbe.exec.command, ["aegisbpf", "health"]);
  assert.deepEqual(container.readinessProbe.exec.command, [
    "/bin/sh",
    "-c",
    "exec aegisbpf health $AEGISBPF_HEALTH_ARGS",
  ]);
  const env = new Map((container.env as Manifest[]).map((e) => [e.name, e]));
  const configMap = only("ConfigMap");
  for (const [name, key] of [["AEGISBPF_HEALTH_ARGS", "health-args"], ["AEGISBPF_RUN_ARGS", "run-args"]]) {
    const ref = env.get(name!)?.valueFrom?.configMapKeyRef;
    assert.deepEqual(ref, { name: configMap.metadata.name, key }, name);
    assert.equal(typeof configMap.data[key!], "string", key);
  }
  assert.match(container.command.at(-1), /^exec aegisbpf --log-format json run .*\$AEGISBPF_RUN_ARGS$/);
});

/** Flags of SPEC section 2 for `run` and `health`, and whether each takes a value. */
const RUN_FLAGS: Record<string, boolean> = {
  "--audit": false,
  "--enforce": false,
  "--policy": true,
  "--ingress": true,
  "--deadman": true,
  "--enforce-signal": true,
  "--api": true,
  "--metrics-textfile": true,
  "--metrics-interval": true,
};
const HEALTH_FLAGS: Record<string, boolean> = { "--json": false, "--require-enforce": false };

function assertFlags(text: string, flags: Record<string, boolean>, where: string): void {
  const words = text.split(/\s+/).filter(Boolean);
  for (let i = 0; i < words.length; i++) {
    const takesValue = flags[words[i]!];
    assert.notEqual(takesValue, undefined, `${where}: ${words[i]} is not a flag of SPEC section 2`);
    if (takesValue) i++;
  }
}

Deno.test("the ConfigMap's flags are flags of `run` and `health`, and its policy validates", async () => {
  const data = only("ConfigMap").data;
  assertFlags(data["run-args"], RUN_FLAGS, "run-args");
  assertFlags(data["health-args"], HEALTH_FLAGS, "health-args");
  assert.throws(() => assertFlags("--enforce --bogus", RUN_FLAGS, "x"), /--bogus is not a flag/);
  await withTempDir("aegisbpf-k8s-", async (dir) => {
    await Deno.writeTextFile(`${dir}/policy.yaml`, data["policy.yaml"]);
    const result = await aegisbpf(["policy", "validate", `${dir}/policy.yaml`]);
    assert.equal(result.code, 0, result.stderr);
  });
});

Deno.test("the memory limit leaves room for the agent with 100,000 rules", () => {
  // Measured (the former bench:apply): 475 MiB resident after replacing 100,000 egress rules with another 100,000.
  const { requests, limits } = agentContainer().resources;
  const mib = (quantity: string) => {
    const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
    assert.ok(match, `unexpected quantity ${quantity}`);
    return Number(match[1]) * (match[2] === "Gi" ? 1024 : 1);
  };
  assert.ok(mib(limits.memory) >= 768, `memory limit ${limits.memory}`);
  assert.ok(mib(requests.memory) <= mib(limits.memory));
  assert.equal(limits.cpu, undefined, "a CPU limit throttles the agent and loses events");
});

const STAGES = ["audit", "canary", "enforce"] as const;

function stage(name: (typeof STAGES)[number]): Manifest[] {
  return kustomize(`${DIR}overlays/${name}`);
}

function named(list: Manifest[], kind: string, name: string): Manifest {
  const found = list.filter((m) => m.kind === kind && m.metadata.name === name);
  assert.equal(found.length, 1, `${kind}/${name}`);
  return found[0]!;
}

/** The flags a DaemonSet's agent and readiness probe get, through its ConfigMap references. */
function flagsOf(list: Manifest[], daemonSet: Manifest): { run: string; health: string } {
  const env = daemonSet.spec.template.spec.containers[0].env as Manifest[];
  const value = (name: string) => {
    const ref = env.find((e) => e.name === name)!.valueFrom.configMapKeyRef;
    return named(list, "ConfigMap", ref.name).data[ref.key] as string;
  };
  return { run: value("AEGISBPF_RUN_ARGS"), health: value("AEGISBPF_HEALTH_ARGS") };
}

Deno.test("the audit overlay audits everywhere and the enforce overlay enforces and requires it for readiness", () => {
  const audit = stage("audit");
  const auditFlags = flagsOf(audit, named(audit, "DaemonSet", "aegisbpf"));
  assert.match(auditFlags.run, /^--audit /);
  assert.equal(auditFlags.health, "");
  const enforce = stage("enforce");
  const enforceFlags = flagsOf(enforce, named(enforce, "DaemonSet", "aegisbpf"));
  assert.match(enforceFlags.run, /^--enforce /);
  assert.equal(enforceFlags.health, "--require-enforce");
  // Only the flags differ from the base: same policy, same pod.
  assert.deepEqual(named(enforce, "DaemonSet", "aegisbpf"), named(manifests(), "DaemonSet", "aegisbpf"));
  assert.equal(
    named(enforce, "ConfigMap", "aegisbpf-config").data["policy.yaml"],
    only("ConfigMap").data["policy.yaml"],
  );
});

Deno.test("the canary overlay enforces on labelled nodes only and audits every other node, with disjoint pods", () => {
  const canary = stage("canary");
  const daemonSets = canary.filter((m) => m.kind === "DaemonSet");
  assert.deepEqual(daemonSets.map((d) => d.metadata.name).sort(), ["aegisbpf", "aegisbpf-canary"]);
  const rest = named(canary, "DaemonSet", "aegisbpf");
  const enforcing = named(canary, "DaemonSet", "aegisbpf-canary");
  assert.match(flagsOf(canary, rest).run, /^--audit /);
  assert.deepEqual(flagsOf(canary, enforcing), {
    run: "--enforce --metrics-textfile /var/lib/node_exporter/textfile_collector/aegisbpf.prom",
    health: "--require-enforce",
  });
  assert.deepEqual(enforcing.spec.template.spec.nodeSelector, { "aegisbpf.io/canary": "true" });
  assert.deepEqual(
    rest.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
      .nodeSelectorTerms,
    [{ matchExpressions: [{ key: "aegisbpf.io/canary", operator: "NotIn", values: ["true"] }] }],
  );
  // Neither selector matches the other's pods: neither DaemonSet adopts or deletes the other's.
  for (const [a, b] of [[rest, enforcing], [enforcing, rest]] as const) {
    const labels = b.spec.template.metadata.labels;
    const matches = Object.entries(a.spec.selector.matchLabels).every(([k, v]) => labels[k] === v);
    assert.equal(matches, false, `${a.metadata.name} selects ${b.metadata.name}'s pods`);
  }
  // One policy, one namespace, one service account for both.
  for (const daemonSet of daemonSets) {
    const pod = daemonSet.spec.template.spec;
    assert.equal(pod.serviceAccountName, "aegisbpf");
    assert.equal(pod.volumes.find((v: Manifest) => v.name === "policy").configMap.name, "aegisbpf-config");
  }
  assert.equal(canary.filter((m) => m.kind === "Namespace").length, 1);
});

Deno.test("every DaemonSet of the base and the overlays runs the image scripts/build-image.sh tags", () => {
  const script = Deno.readTextFileSync(`${PACKAGING}../scripts/build-image.sh`);
  assert.match(script, /io\.containerd\.image\.name\\":\\"docker\.io\/library\/aegisbpf:\$version/);
  assert.deepEqual(readKustomization(`${DIR}base`).images, [{ name: "aegisbpf", newTag: VERSION }]);
  for (const list of [manifests(), ...STAGES.map(stage)]) {
    for (const daemonSet of list.filter((m) => m.kind === "DaemonSet")) {
      const pod = daemonSet.spec.template.spec;
      for (const container of [...pod.containers, ...pod.initContainers]) {
        assert.equal(container.image, `aegisbpf:${VERSION}`, `${daemonSet.metadata.name}/${container.name}`);
      }
    }
  }
});

Deno.test("the renderer refuses a patch that matches nothing, a repeated resource and a key it does not know", async () => {
  await withTempDir("aegisbpf-kustomize-", (dir) => {
    const write = (name: string, text: string) => Deno.writeTextFileSync(`${dir}/${name}`, text);
    write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }\n");
    write("patch.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: b }\n");
    write(
      "kustomization.yaml",
      "kind: Kustomization\nresources: [cm.yaml]\npatches: [{ path: patch.yaml }]\n",
    );
    assert.throws(() => kustomize(dir), /ConfigMap\/\/b matches 0 resources/);
    write("kustomization.yaml", "kind: Kustomization\nresources: [cm.yaml, cm.yaml]\n");
    assert.throws(() => kustomize(dir), /ConfigMap\/\/a twice/);
    write("kustomization.yaml", "kind: Kustomization\nresources: [cm.yaml]\nreplicas: []\n");
    assert.throws(() => kustomize(dir), /does not know replicas/);
    return Promise.resolve();
  });
});

const kubectl = (() => {
  try {
    return new Deno.Command("kubectl", { args: ["version", "--client"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

/**
 * What `kubectl kustomize` printed for the base and each overlay, kept in tests/packaging/kustomized/ (kubectl
 * is in neither Debian nor npm: a machine that has it writes them again with
 * `kubectl kustomize packaging/kubernetes/ > tests/packaging/kustomized/base.yaml` and
 * `kubectl kustomize packaging/kubernetes/overlays/NAME > tests/packaging/kustomized/NAME.yaml`).
 */
const KUSTOMIZED = `${new URL(".", import.meta.url).pathname}kustomized/`;

Deno.test("kubectl kustomize's output for the base and every overlay is what tests/packaging/kustomize.ts renders", () => {
  const key = (m: Manifest) => `${m.kind}/${m.metadata.name}`;
  const sorted = (list: Manifest[]) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
  for (const [name, dir] of [["base", DIR], ...STAGES.map((stage) => [stage, `${DIR}overlays/${stage}`])]) {
    const kept = Deno.readTextFileSync(`${KUSTOMIZED}${name}.yaml`);
    const rerender = `kubectl kustomize ${dir} > tests/packaging/kustomized/${name}.yaml`;
    assert.deepEqual(
      sorted(kustomize(dir!)),
      sorted(parseStrict(kept, `${name}.yaml`)),
      `${dir}: the manifests changed since kubectl rendered them: ${rerender}`,
    );
    // Where kubectl is installed, what it prints now is what was kept.
    if (!kubectl) continue;
    const output = new Deno.Command("kubectl", {
      args: ["kustomize", dir!],
      stdout: "piped",
      stderr: "piped",
    })
      .outputSync();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(
      sorted(parseStrict(new TextDecoder().decode(output.stdout), "kubectl kustomize")),
      sorted(parseStrict(kept, `${name}.yaml`)),
      `${dir}: kubectl renders otherwise than kept: ${rerender}`,
    );
  }
});
