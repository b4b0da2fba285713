/** Reading systemd unit files and the files of `packaging/` for the packaging tests. */

export const PACKAGING = new URL("../../packaging/", import.meta.url).pathname;
export const REPO = new URL("../../", import.meta.url).pathname;

/** Section name to directive name to every value it is given, in order (comments and blanks skipped). */
export type UnitFile = Map<string, Map<string, string[]>>;

export function parseUnitFile(text: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const equals = line.indexOf("=");
    if (!section || equals < 1) {
      throw new SyntaxError(`Unit file line ${index + 1} is not KEY=VALUE: ${line}`);
    }
    const key = line.slice(0, equals);
    section.set(key, [...section.get(key) ?? [], line.slice(equals + 1)]);
  }
  return unit;
}

/** The single value of `key` in `section`; throws when it is absent or given more than once. */
export function directive(unit: UnitFile, section: string, key: string): string {
  const values = unit.get(section)?.get(key) ?? [];
  if (values.length !== 1) {
    throw new Error(`[${section}] ${key}= is given ${values.length} times, expected once`);
  }
  return values[0]!;
}

export function readUnit(name: string): UnitFile {
  return parseUnitFile(Deno.readTextFileSync(`${PACKAGING}systemd/${name}`));
}

/** Runs a command; never throws for a non-zero exit. */
export async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options.env && { env: options.env },
    ...options.cwd && { cwd: options.cwd },
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** A temporary directory for `fn`, removed afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
