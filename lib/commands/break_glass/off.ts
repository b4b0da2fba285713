import { breakGlassOff } from "../../ops/break_glass.ts";
import { defineCommand } from "../../cli/command.ts";

export const breakGlassOffCommand = defineCommand({
  name: "off",
  summary: "end break-glass: the policy's mode applies again at once",
  description: "Removes the marker <config-dir>/break_glass, then clears the kernel's break-glass word: " +
    "hooks enforce again where the policy says enforce.",
  options: {},
  args: [],
  examples: ["aegisbpf break-glass off"],
  run(ctx) {
    const { removedMarker, kernel } = breakGlassOff(ctx.globals);
    const marker = removedMarker ? "marker removed" : "there was no marker";
    const where = kernel === undefined ? `; nothing of aegisbpf is pinned under ${ctx.globals.bpffs}` : "";
    ctx.stdout.line(`break-glass off: ${marker}${where}`);
    return Promise.resolve(0);
  },
});
