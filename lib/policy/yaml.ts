/**
 * The YAML parser, loaded only when a policy needs it. Clean JSON (what fleets generate, and what a
 * 100,000-rule policy is) is parsed by `JSON.parse` alone, so `policy apply` of it never pays for the YAML
 * module at start-up. Code that may need YAML calls `yaml()`, which throws `YamlNotLoaded` until the module
 * is loaded; an async caller wraps its synchronous work in `withYaml`, which loads the module and runs the
 * work again. Importing lib/policy/parse.ts (or yaml_eager.ts) loads it up front, as every other command does.
 */
import type * as Yaml from "yaml";

export type YamlModule = typeof Yaml;

let loaded: YamlModule | undefined;

/** Thrown by `yaml()` before the module is loaded: a caller's cue to load it and try again. */
export class YamlNotLoaded extends Error {
  override name = "YamlNotLoaded";
  constructor() {
    super("the YAML parser is not loaded: run this inside withYaml(), or import lib/policy/parse.ts");
  }
}

/** The YAML module, or `YamlNotLoaded` when nothing has loaded it yet. */
export function yaml(): YamlModule {
  if (loaded === undefined) throw new YamlNotLoaded();
  return loaded;
}

/** Whether the YAML module is loaded. */
export function yamlLoaded(): boolean {
  return loaded !== undefined;
}

/** Makes a statically imported YAML module the one `yaml()` returns. */
export function provideYaml(module: YamlModule): void {
  loaded ??= module;
}

/** Loads the YAML module. */
export async function loadYaml(): Promise<YamlModule> {
  return loaded ??= await import("yaml");
}

/**
 * Runs `work`; when it needs the YAML parser and it is not loaded, loads it and runs `work` once more.
 * `work` must change nothing before it parses (reads, hashes and checks are fine): it may run twice.
 */
export async function withYaml<T>(work: () => T): Promise<T> {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof YamlNotLoaded)) throw error;
    await loadYaml();
    return work();
  }
}
