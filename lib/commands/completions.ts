import { defineCommand } from "../cli/command.ts";
import { completionScript, SHELLS } from "../cli/completions/script.ts";

export const completions = defineCommand({
  name: "completions",
  summary: "print the shell completion script for bash, zsh or fish",
  description:
    "Prints a completion script for SHELL to stdout; it covers every command, flag and fixed value.",
  options: {},
  args: [{ name: "SHELL", description: "the shell", choices: SHELLS }],
  examples: [
    "aegisbpf completions bash > /etc/bash_completion.d/aegisbpf",
    'aegisbpf completions zsh > "${fpath[1]}/_aegisbpf"',
    "aegisbpf completions fish > ~/.config/fish/completions/aegisbpf.fish",
  ],
  run(ctx, { args }) {
    ctx.stdout.write(completionScript(args.SHELL, ctx.registry));
    return Promise.resolve(0);
  },
});
