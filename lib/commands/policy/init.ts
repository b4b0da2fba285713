import { defineCommand } from "../../cli/command.ts";
import { table } from "../../cli/output.ts";
import { InputError } from "../../errors.ts";
import { parsePolicy } from "../../policy/parse.ts";
import {
  PROFILE_NAMES,
  type ProfileName,
  PROFILES,
  profileTestText,
  profileText,
  testFileBeside,
} from "../../policy/profiles.ts";
import { writePolicyOutput } from "./_output.ts";

export const policyInit = defineCommand({
  name: "init",
  summary: "write a starter policy (baseline, web-server, ci-runner, bastion) to begin from",
  description: "Writes the starter policy PROFILE to FILE (or stdout): every profile is in audit mode, " +
    "validates and lints without errors, denies nothing needed to log in or to run aegisbpf, and tags " +
    "each rule with the MITRE ATT&CK technique it counters (tags on its events and metrics). Edit it, " +
    "apply it in audit, read the events, then enforce (see the learn runbook). Refuses to replace an " +
    "existing FILE without --force. --list prints the profiles. --with-test also writes the profile's " +
    "test file beside FILE (policy.yaml gives policy.test.yaml), whose cases `aegisbpf policy test` runs in " +
    "a throw-away data plane.",
  options: {
    profile: {
      type: "string",
      valueName: "NAME",
      choices: PROFILE_NAMES,
      description: "the starter policy to write",
    },
    list: { type: "boolean", description: "list the profiles and what each is for" },
    output: {
      type: "string",
      short: "o",
      valueName: "FILE",
      complete: "file",
      description: "write the policy to FILE (default: stdout)",
    },
    force: { type: "boolean", description: "replace FILE when it exists" },
    "with-test": {
      type: "boolean",
      description: "also write the profile's policy test file beside FILE (FILE.test.yaml; needs --output)",
    },
  },
  args: [],
  examples: [
    "aegisbpf policy init --list",
    "aegisbpf policy init --profile web-server -o /etc/aegisbpf/policy.yaml",
    "aegisbpf policy init --profile bastion -o bastion.yaml --with-test",
  ],
  async run(ctx, { flags }) {
    if (flags.list) {
      for (
        const line of table([["PROFILE", "WHAT IT IS FOR"], ...PROFILES.map((p) => [p.name, p.summary])])
      ) {
        ctx.stdout.line(line);
      }
      return 0;
    }
    if (flags.profile === undefined) {
      throw new InputError(`name a profile with --profile NAME (${PROFILE_NAMES.join(", ")}), or --list`);
    }
    if (flags["with-test"] && flags.output === undefined) {
      throw new InputError("--with-test writes the test file beside the policy: give --output FILE too");
    }
    const testFile = flags["with-test"] && flags.output !== undefined
      ? testFileBeside(flags.output)
      : undefined;
    if (testFile !== undefined && !flags.force && (await exists(testFile))) {
      throw new InputError(`${testFile}: exists; give another -o FILE, or --force to replace it`);
    }
    const text = await profileText(flags.profile as ProfileName);
    parsePolicy(text, `profile ${flags.profile}`); // a profile that does not validate is a bug, never written
    if (flags.output === undefined) ctx.stdout.write(text);
    else {
      writePolicyOutput(flags.output, text, flags.force === true);
      if (testFile !== undefined) {
        const name = flags.output.slice(flags.output.lastIndexOf("/") + 1);
        writePolicyOutput(
          testFile,
          await profileTestText(flags.profile as ProfileName, name),
          flags.force === true,
        );
        ctx.log.info(`wrote its test file to ${testFile}: run it with aegisbpf policy test ${testFile}`);
      }
      ctx.log.info(
        `wrote profile ${flags.profile} to ${flags.output} (audit mode): lint it, apply it, read the events`,
      );
    }
    return 0;
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
