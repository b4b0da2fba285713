/**
 * What `policy suggest` asks of this host: which file an event's name and inode are, which program an
 * inode is, whether a path exists. Only for events of this host (or lines that name none): another host's
 * inode numbers mean nothing here. Programs are looked for in the usual program directories, once.
 */
import { currentIdentity } from "../kernel/resolve.ts";
import type { SuggestHost } from "../policy/suggest.ts";

/** Where programs live: what exec and egress events of a distribution's packages name. */
export const PROGRAM_DIRS = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
  "/usr/libexec",
  "/usr/lib/openssh",
];

/** The (dev, ino) the kernel's hooks see for the regular file at `path` (its mount's device, as apply does). */
function identityOf(path: string, mountinfo: string): string | undefined {
  try {
    if (!Deno.statSync(path).isFile) return undefined;
    const found = currentIdentity(path, mountinfo);
    return found && `${found.dev}:${found.ino}`;
  } catch {
    return undefined;
  }
}

export function localSuggestHost(dirs: readonly string[] = PROGRAM_DIRS): SuggestHost {
  const hostName = Deno.hostname();
  let mountinfo: string | undefined;
  const identity = (path: string) =>
    identityOf(path, mountinfo ??= Deno.readTextFileSync("/proc/self/mountinfo"));
  const here = (host: string | undefined) => host === undefined || host === hostName;
  let programs: Map<string, string> | undefined;
  const programIndex = () => {
    if (programs) return programs;
    programs = new Map();
    for (const dir of dirs) {
      let entries: Deno.DirEntry[];
      try {
        entries = [...Deno.readDirSync(dir)];
      } catch {
        continue;
      }
      for (const entry of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
        const path = `${dir}/${entry.name}`;
        const id = identity(path);
        if (id !== undefined && !programs.has(id)) programs.set(id, path);
      }
    }
    return programs;
  };
  return {
    resolveFile(name, dev, ino, host) {
      if (!here(host) || name.includes("/") || name === "." || name === "..") return undefined;
      for (const dir of dirs) {
        if (identity(`${dir}/${name}`) === `${dev}:${ino}`) return `${dir}/${name}`;
      }
      return programIndex().get(`${dev}:${ino}`);
    },
    resolveProgram(dev, ino, host) {
      return here(host) ? programIndex().get(`${dev}:${ino}`) : undefined;
    },
    exists(path) {
      try {
        Deno.statSync(path);
        return true;
      } catch {
        return false;
      }
    },
  };
}
