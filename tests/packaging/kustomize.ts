/**
 * A small renderer of the kustomizations in packaging/kubernetes/, for the packaging tests: neither Debian
 * nor npm ships kustomize (or a kubectl with a current one), so the tests apply the overlays themselves.
 * It does what our kustomizations use and refuses anything else: `resources` (files and directories),
 * `patches` by `path` (strategic merge: maps merged, `null` removes a key, lists of objects with a `name`
 * merged by it, other lists replaced; `$patch: delete` removes the target), `nameSuffix` (every kind but
 * Namespace) with the references to a renamed ConfigMap or ServiceAccount, `images` (newName, newTag).
 * Where kubectl exists, the test
 * holds this renderer's output equal to `kubectl kustomize`.
 */

import { join } from "node:path";
import { parseAllDocuments } from "yaml";

// deno-lint-ignore no-explicit-any
export type Manifest = Record<string, any>;

const KNOWN_KEYS = ["apiVersion", "kind", "resources", "patches", "nameSuffix", "images"];

/** The documents of one YAML file, parsed strictly: an error or warning (a duplicate key) throws. */
export function parseStrict(text: string, name: string): Manifest[] {
  const documents = parseAllDocuments(text, { strict: true, uniqueKeys: true });
  const list = Array.isArray(documents) ? documents : [];
  for (const document of list) {
    const problems = [...document.errors, ...document.warnings].map(String);
    if (problems.length) throw new SyntaxError(`${name}: ${problems.join("; ")}`);
  }
  return list.map((document) => document.toJS() as Manifest).filter((m) => m !== null);
}

/** The kustomization of `dir`, as its file says. */
export function readKustomization(dir: string): Manifest {
  const file = join(dir, "kustomization.yaml");
  const [kustomization] = parseStrict(Deno.readTextFileSync(file), file);
  if (kustomization?.kind !== "Kustomization") throw new Error(`${file}: not a Kustomization`);
  const unknown = Object.keys(kustomization).filter((key) => !KNOWN_KEYS.includes(key));
  if (unknown.length) throw new Error(`${file}: this renderer does not know ${unknown.join(", ")}`);
  return kustomization;
}

/** The manifests the kustomization in `dir` renders. */
export function kustomize(dir: string): Manifest[] {
  const kustomization = readKustomization(dir);
  let resources: Manifest[] = [];
  for (const resource of (kustomization.resources ?? []) as string[]) {
    const path = join(dir, resource);
    resources.push(
      ...(Deno.statSync(path).isDirectory ? kustomize(path) : parseStrict(Deno.readTextFileSync(path), path)),
    );
  }
  for (const patch of (kustomization.patches ?? []) as Manifest[]) {
    if (Object.keys(patch).join() !== "path") throw new Error(`${dir}: only patches by path are rendered`);
    const file = join(dir, patch.path);
    for (const document of parseStrict(Deno.readTextFileSync(file), file)) {
      resources = applyPatch(resources, document, file);
    }
  }
  if (kustomization.nameSuffix !== undefined) resources = addSuffix(resources, kustomization.nameSuffix);
  for (const image of (kustomization.images ?? []) as Manifest[]) setImage(resources, image);
  const ids = resources.map(idOf);
  const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
  if (repeated !== undefined) throw new Error(`${dir}: ${repeated} twice`);
  return resources;
}

function idOf(manifest: Manifest): string {
  return `${manifest.kind}/${manifest.metadata?.namespace ?? ""}/${manifest.metadata?.name}`;
}

function applyPatch(resources: Manifest[], patch: Manifest, file: string): Manifest[] {
  const targets = resources.filter((r) => idOf(r) === idOf(patch));
  if (targets.length !== 1) throw new Error(`${file}: ${idOf(patch)} matches ${targets.length} resources`);
  const { $patch, ...rest } = patch;
  if ($patch === "delete") return resources.filter((r) => r !== targets[0]);
  if ($patch !== undefined) throw new Error(`${file}: $patch ${$patch} is not rendered`);
  return resources.map((r) => r === targets[0] ? merge(r, rest) as Manifest : r);
}

/** A strategic merge of `patch` into `base`, as far as our patches go. */
export function merge(base: unknown, patch: unknown): unknown {
  if (Array.isArray(patch)) {
    const named = (list: unknown[]) => list.every((item) => typeof (item as Manifest)?.name === "string");
    if (!Array.isArray(base) || !named(base) || !named(patch)) return structuredClone(patch);
    const out = base.map((item) => {
      const change = patch.find((p) => p.name === item.name);
      return change === undefined ? structuredClone(item) : merge(item, change);
    });
    for (const item of patch) if (!base.some((b) => b.name === item.name)) out.push(structuredClone(item));
    return out;
  }
  if (typeof patch !== "object" || patch === null) return patch;
  if (typeof base !== "object" || base === null || Array.isArray(base)) base = {};
  const out: Manifest = structuredClone(base as Manifest);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = merge(out[key], value);
  }
  return out;
}

function addSuffix(resources: Manifest[], suffix: string): Manifest[] {
  const renamed = new Map<string, string>();
  const out = resources.map((resource) => {
    if (resource.kind === "Namespace") return resource;
    const name = `${resource.metadata.name}${suffix}`;
    renamed.set(`${resource.kind}/${resource.metadata.name}`, name);
    return { ...resource, metadata: { ...resource.metadata, name } };
  });
  const rename = (kind: string, name: string | undefined) => renamed.get(`${kind}/${name}`) ?? name;
  for (const resource of out) {
    const pod = resource.spec?.template?.spec;
    if (pod === undefined) continue;
    if (pod.serviceAccountName !== undefined) {
      pod.serviceAccountName = rename("ServiceAccount", pod.serviceAccountName);
    }
    for (const volume of pod.volumes ?? []) {
      if (volume.configMap) volume.configMap.name = rename("ConfigMap", volume.configMap.name);
    }
    for (const container of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
      for (const env of container.env ?? []) {
        const ref = env.valueFrom?.configMapKeyRef;
        if (ref) ref.name = rename("ConfigMap", ref.name);
      }
      if (container.envFrom !== undefined) throw new Error("envFrom is not rendered");
    }
  }
  return out;
}

/** A kustomization `images` entry: every container whose image is `name` (any tag) gets the new one. */
function setImage(resources: Manifest[], image: Manifest): void {
  const unknown = Object.keys(image).filter((key) => !["name", "newName", "newTag"].includes(key));
  if (unknown.length) throw new Error(`images: ${unknown.join(", ")} is not rendered`);
  for (const resource of resources) {
    const pod = resource.spec?.template?.spec;
    for (const container of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
      const [name, tag] = container.image.split(":");
      if (name !== image.name) continue;
      container.image = `${image.newName ?? name}${image.newTag ?? tag ? `:${image.newTag ?? tag}` : ""}`;
    }
  }
}
