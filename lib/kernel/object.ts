import { type BpfObject, OpenBpfObject } from "../../ffi/mod.ts";

/** The programs of bpf/aegis.bpf.c, by the area they serve. */
export const PROGRAMS = {
  fileOpen: "aegis_file_open",
  fileOpenAudit: "aegis_tp_openat",
  connect4: "aegis_connect4",
  ingress: "aegis_xdp",
} as const;
export type ProgramName = typeof PROGRAMS[keyof typeof PROGRAMS];

// Read as a file next to the sources so that `deno compile --include bpf/build/aegis.bpf.o` embeds it.
const OBJECT_URL = new URL("../../bpf/build/aegis.bpf.o", import.meta.url);

let image: Uint8Array<ArrayBuffer> | undefined;

/** The compiled BPF object, or an Error telling how to build it. */
export function aegisObjectImage(): Uint8Array<ArrayBuffer> {
  if (!image) {
    try {
      image = Deno.readFileSync(OBJECT_URL);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`BPF object not built: ${OBJECT_URL.pathname} is missing (run deno task build:bpf)`);
      }
      throw error;
    }
  }
  return image;
}

/** Opens the aegisbpf object and loads the named programs (every map is created). */
export function loadPrograms(programs: readonly ProgramName[]): BpfObject {
  const open = OpenBpfObject.fromBytes(aegisObjectImage());
  try {
    return open.loadOnly(programs).load();
  } catch (error) {
    open.close();
    throw error;
  }
}
