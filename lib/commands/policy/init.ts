import { defineCommand } from "../../cli/command.ts";
import { table } from "../../cli/output.ts";
import { InputError } from "../../errors.ts";
import { parsePolicy } from "../../policy/parse.ts";
import { PROFILE_NAMES, type ProfileName, PROFILES, profileText } from "../../policy/profiles.ts";
import { writePolicyOutput } from "./_output.ts";

export const policyInit = defineCommand({
  name: "init",
  summary: "write a starter policy (baseline, web-server, ci-runner, bastion) to begin from",
  description: "Writes the starter policy PROFILE to FILE (or stdout): every profile is in audit mode, " +
    "validates and lints without errors, denies nothing needed to log in or to run aegisbpf, and tags " +
    "each rule with the MITRE ATT&CK technique it counters (tags on its events and metrics). Edit it, " +
    "apply it in audit, read the events, then enforce (see the learn runbook). Refuses to replace an " +
    "existing FILE without --force. --list prints the profiles.",
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
  },
  args: [],
  examples: [
    "aegisbpf policy init --list",
    "aegisbpf policy init --profile web-server -o /etc/aegisbpf/policy.yaml",
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
    const text = await profileText(flags.profile as ProfileName);
    parsePolicy(text, `profile ${flags.profile}`); // a profile that does not validate is a bug, never written
    if (flags.output === undefined) ctx.stdout.write(text);
    else {
      writePolicyOutput(flags.output, text, flags.force === true);
      ctx.log.info(
        `wrote profile ${flags.profile} to ${flags.output} (audit mode): lint it, apply it, read the events`,
      );
    }
    return 0;
  },
});
