import { libbpfVersion } from "../kernel/info.ts";
import { VERSION } from "../version.ts";

export const VERSION_HELP = `Usage: aegisbpf version

Prints the aegisbpf version, the libbpf it uses and the running kernel.`;

export function version(): number {
  console.log(`aegisbpf ${VERSION}\nlibbpf ${libbpfVersion()}\nkernel ${Deno.osRelease()}`);
  return 0;
}
