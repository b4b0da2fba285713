/**
 * Release tooling, run by scripts/build-deb.sh, scripts/build-image.sh and scripts/release.sh (not part of
 * the agent). Two subcommands:
 *
 *   sbom --kind deb|image --name NAME --out FILE [--packages TSV] [--deno FILE]
 *     The CycloneDX 1.6 SBOM of the artifact NAME: the npm packages of deno.lock, the Debian packages
 *     (the .deb's Depends: as this machine has them; for the image, the TSV of dpkg-query the image build
 *     wrote), Deno (the image's binary --deno, or the Deno running this), bpf/build/aegis.bpf.o's sha256.
 *   sign --key KEY --out ENVELOPE FILE...
 *     The in-toto statement naming each FILE by its name and sha256 (and, for an OCI archive, the image
 *     aegisbpf:<version> by its manifest digest), in a DSSE envelope signed with the Ed25519 KEY.
 */

import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sha256File } from "../lib/release/file_digest.ts";
import { type DebianPackage, npmPackagesOfLock, sbomJson } from "../lib/release/sbom.ts";
import { signRelease, type Subject } from "../lib/release/statement.ts";
import { VERSION } from "../lib/version.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BPF_OBJECT = join(ROOT, "bpf/build/aegis.bpf.o");
/** The .deb's Depends: (scripts/build-deb.sh). */
const DEB_DEPENDS = ["libbpf1", "libc6"];

function fail(message: string): never {
  console.error(`release: error: ${message}`);
  Deno.exit(2);
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder();
  if (!output.success) fail(`${command} ${args.join(" ")}: ${text.decode(output.stderr).trim()}`);
  return text.decode(output.stdout);
}

/** dpkg-query's `Package\tVersion\tArchitecture` lines. */
function parsePackages(tsv: string): DebianPackage[] {
  return tsv.split("\n").filter((line) => line !== "").map((line) => {
    const [name, version, architecture] = line.split("\t");
    if (!name || !version || !architecture) fail(`not a package line: ${JSON.stringify(line)}`);
    return { name, version, architecture };
  });
}

function distro(): string {
  const release = Deno.readTextFileSync("/etc/os-release");
  const id = /^ID=(.*)$/m.exec(release)?.[1]?.replaceAll('"', "");
  const version = /^VERSION_ID=(.*)$/m.exec(release)?.[1]?.replaceAll('"', "");
  return `${id ?? "debian"}-${version ?? "unknown"}`;
}

async function sbom(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      kind: { type: "string" },
      name: { type: "string" },
      out: { type: "string" },
      packages: { type: "string" },
      deno: { type: "string" },
    },
  });
  const { kind, name, out } = values;
  if ((kind !== "deb" && kind !== "image") || !name || !out) fail("sbom needs --kind deb|image --name --out");
  if (kind === "image" && (!values.packages || !values.deno)) {
    fail("an image SBOM needs --packages and --deno");
  }
  const debian = kind === "image" ? parsePackages(Deno.readTextFileSync(values.packages!)) : parsePackages(
    await run("dpkg-query", ["-W", "-f=${Package}\\t${Version}\\t${Architecture}\\n", ...DEB_DEPENDS]),
  );
  const deno = kind === "image"
    ? {
      version: (await run(values.deno!, ["--version"])).split(" ")[1] ?? fail("no deno version"),
      shipped: true,
      sha256: await sha256File(values.deno!),
    }
    : { version: Deno.version.deno, shipped: false };
  const text = sbomJson({
    artifact: { name, version: VERSION, kind },
    npm: npmPackagesOfLock(JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.lock")))),
    debian,
    distro: distro(),
    deno,
    bpfObject: { name: basename(BPF_OBJECT), sha256: await sha256File(BPF_OBJECT) },
    serialNumber: `urn:uuid:${crypto.randomUUID()}`,
    timestamp: new Date(),
  });
  Deno.writeTextFileSync(out, text);
}

/** The manifest digest of the one image in an OCI archive (a tar of an OCI image layout). */
async function imageDigest(archive: string): Promise<string> {
  const index = JSON.parse(await run("tar", ["-xOf", archive, "./index.json"]));
  const digest = index.manifests?.length === 1 ? index.manifests[0].digest : undefined;
  if (typeof digest !== "string" || !digest.startsWith("sha256:")) {
    fail(`${archive}: not one sha256 manifest`);
  }
  return digest.slice("sha256:".length);
}

async function sign(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    options: { key: { type: "string" }, out: { type: "string" } },
    allowPositionals: true,
  });
  if (!values.key || !values.out || positionals.length === 0) fail("sign needs --key KEY --out FILE FILE...");
  const subjects: Subject[] = [];
  for (const file of positionals) {
    subjects.push({ name: basename(file), digest: { sha256: await sha256File(file) } });
    if (file.endsWith(".oci.tar")) {
      subjects.push({ name: `aegisbpf:${VERSION}`, digest: { sha256: await imageDigest(file) } });
    }
  }
  const envelope = signRelease(
    { product: "aegisbpf", version: VERSION, subjects },
    Deno.readTextFileSync(values.key),
    values.key,
  );
  Deno.writeTextFileSync(values.out, envelope);
}

if (import.meta.main) {
  const [command, ...rest] = Deno.args;
  if (command === "sbom") await sbom(rest);
  else if (command === "sign") await sign(rest);
  else fail("usage: scripts/release.ts sbom|sign ... (see the comment at the top of the file)");
}
