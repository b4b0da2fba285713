/**
 * dpkg's database, parsed: which packages are installed (`status`), which files each one ships with their
 * MD5 (`info/PKG.md5sums`, `info/PKG:ARCH.md5sums` for a Multi-Arch: same package) and which files another
 * package or the admin moved aside (`diversions`). Pure: the texts come in, nothing is read here.
 */

/** An installed package: its name and the name its info files go by (`PKG` or `PKG:ARCH`). */
export type InstalledPackage = { name: string; infoName: string; arch?: string };

/**
 * The packages `status` says are installed (`Status: install ok installed`, or `hold ok installed`), each
 * with the name its info files carry: `PKG:ARCH` for a Multi-Arch: same package, else `PKG`.
 */
export function installedPackages(status: string): InstalledPackage[] {
  const found: InstalledPackage[] = [];
  for (const paragraph of status.split(/\n\s*\n/)) {
    const fields = paragraphFields(paragraph);
    const name = fields.get("package");
    const state = fields.get("status")?.split(/\s+/);
    if (name === undefined || state?.[1] !== "ok" || state[2] !== "installed") continue;
    const arch = fields.get("architecture");
    const same = fields.get("multi-arch") === "same" && arch !== undefined;
    found.push({ name, infoName: same ? `${name}:${arch}` : name, ...arch !== undefined && { arch } });
  }
  return found;
}

/** A paragraph's single-line fields, by lower-case name (continuation lines are skipped). */
function paragraphFields(paragraph: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of paragraph.split("\n")) {
    if (line === "" || line.startsWith(" ") || line.startsWith("\t")) continue;
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return fields;
}

/** A file a package ships, as its md5sums lists it: the absolute path and the MD5 dpkg recorded. */
export type PackageFile = { path: string; md5: string };

const MD5_LINE = /^([0-9a-fA-F]{32}) [ *]?(.+)$/;

/**
 * The lines of an md5sums file: `MD5  path` (the path relative to /, possibly with spaces). A line that
 * is not one is returned in `bad`, never dropped silently.
 */
export function parseMd5sums(text: string): { files: PackageFile[]; bad: string[] } {
  const files: PackageFile[] = [];
  const bad: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const match = MD5_LINE.exec(line);
    if (!match) {
      bad.push(line);
      continue;
    }
    const relative = match[2]!.replace(/^\/+/, "");
    files.push({ path: `/${relative}`, md5: match[1]!.toLowerCase() });
  }
  return { files, bad };
}

/** One diversion: the file `from` of every package but `by` is installed at `to`; `by` ":" is the admin. */
export type Diversion = { from: string; to: string; by: string };

/** dpkg's `diversions` file: three lines per diversion (from, to, the diverting package or ":"). */
export function parseDiversions(text: string): Diversion[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const diversions: Diversion[] = [];
  for (let i = 0; i + 2 < lines.length; i += 3) {
    diversions.push({ from: lines[i]!, to: lines[i + 1]!, by: lines[i + 2]! });
  }
  return diversions;
}

/**
 * Where `pkg`'s file `path` is on disk: the diverted name when another package (or the admin, ":") diverts
 * it, else the path itself. The diverting package's own file keeps its name.
 */
export function divertedPath(path: string, pkg: string, diversions: ReadonlyMap<string, Diversion>): string {
  const diversion = diversions.get(path);
  if (diversion === undefined || diversion.by === pkg) return path;
  return diversion.to;
}
