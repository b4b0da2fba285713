/** The entries of a directory, sorted; none when it does not exist. */
export function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The subdirectories of `<bpffs>/aegisbpf/`: pinned maps, links and (for inspection) programs. */
export const PIN_KINDS = ["links", "progs", "maps"] as const;

/** Makes `<pinDir>/{links,progs,maps}`. */
export function makePinDirs(pinDir: string): void {
  for (const kind of PIN_KINDS) Deno.mkdirSync(`${pinDir}/${kind}`, { recursive: true });
}
