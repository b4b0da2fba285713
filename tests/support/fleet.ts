/**
 * A fleet-sized policy for the scale benchmarks and tests: egress denies of single addresses in
 * 240.0.0.0/4, which nothing routes, so applying it denies nothing that runs here; and the resident memory
 * of a process.
 */

/** `rules` egress deny rules, one /32 each, named after their place. */
export function unroutedDenies(rules: number): { cidr: string }[] {
  return Array.from({ length: rules }, (_, i) => ({
    cidr: `${240 + (i >> 24 & 15)}.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}/32`,
  }));
}

/** A JSON policy of `deny` egress rules (and whatever `spec` adds). */
export function fleetPolicyJson(
  name: string,
  deny: object[],
  spec: { mode: "audit" | "enforce"; scope?: { cgroups: string[] } },
): string {
  return JSON.stringify({
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name, version: 1 },
    spec: { ...spec, network: { egress: { deny } } },
  });
}

/** VmRSS and VmHWM (the most it has held) of a process, in KiB. */
export function memoryKib(pid: number): { rss: number; peak: number; anon: number; file: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: field("VmRSS"), peak: field("VmHWM"), anon: field("RssAnon"), file: field("RssFile") };
}
