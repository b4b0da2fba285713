import { defineCommand } from "../cli/command.ts";
import { helpFor } from "../cli/help.ts";
import { palette } from "../text/palette.ts";

export const help = defineCommand({
  name: "help",
  summary: "show the help of aegisbpf or of a command",
  options: {},
  args: [{
    name: "COMMAND",
    description: "the command, for example: policy lint",
    variadic: true,
    complete: "command",
  }],
  examples: ["aegisbpf help", "aegisbpf help policy", "aegisbpf help policy lint"],
  run(ctx, { args }) {
    ctx.stdout.line(helpFor(ctx.registry, args.COMMAND, palette(ctx.color)));
    return Promise.resolve(0);
  },
});
