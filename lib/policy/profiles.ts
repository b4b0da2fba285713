/**
 * The starter library: policies/*.yaml, read as files next to the sources so that `deno compile --include
 * policies` embeds them (as bpf/build/aegis.bpf.o is). `policy init --profile NAME` writes one out.
 */

/** Each profile and what it is for, in the order `policy init --list` prints them. */
export const PROFILES = [
  {
    name: "baseline",
    summary:
      "any host: protected credential, cron, systemd, sudoers, loader and SSH files; no cloud metadata",
  },
  { name: "web-server", summary: "the baseline, no netcat or socat, curl and wget only to this host" },
  { name: "ci-runner", summary: "the baseline and no netcat or socat; builds keep curl, wget and compilers" },
  {
    name: "bastion",
    summary: "the baseline, no netcat, socat or compilers, curl and wget only to this host",
  },
] as const;

export type ProfileName = typeof PROFILES[number]["name"];

export const PROFILE_NAMES: readonly string[] = PROFILES.map((profile) => profile.name);

/** The text of profile `name`, as shipped. */
export async function profileText(name: ProfileName): Promise<string> {
  return await Deno.readTextFile(new URL(`../../policies/${name}.yaml`, import.meta.url));
}

/**
 * The `policy test` file of profile `name` (policies/NAME.test.yaml), its `policy:` naming `policyFile`
 * (relative to the test file) instead of the profile's own file.
 */
export async function profileTestText(name: ProfileName, policyFile = `${name}.yaml`): Promise<string> {
  const text = await Deno.readTextFile(new URL(`../../policies/${name}.test.yaml`, import.meta.url));
  return text.replace(/^policy: .*$/m, `policy: ${JSON.stringify(policyFile)}`);
}

/** Where `policy init --with-test` writes the test file of a policy written to `policyPath`. */
export function testFileBeside(policyPath: string): string {
  return `${policyPath.replace(/\.(ya?ml|json)$/, "")}.test.yaml`;
}
