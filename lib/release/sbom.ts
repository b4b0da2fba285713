/**
 * The CycloneDX 1.6 SBOM of a release artifact (the .deb or the image), built with the CycloneDX project's
 * own library: the npm packages of deno.lock (version and the lock's integrity hash), the Debian packages
 * the artifact runs on (name and version from dpkg), Deno, and the BPF object by its sha256. Pure: the
 * caller reads the lock, dpkg and the files (scripts/release.ts).
 */

import { Enums, Models, Serialize, Spec } from "@cyclonedx/cyclonedx-library";
import { PackageURL } from "packageurl-js";

/** The CycloneDX specification version written. */
export const SBOM_SPEC_VERSION = "1.6";

/** One package of deno.lock's `npm` section: `integrity` is the registry's SRI (sha512-BASE64). */
export type NpmPackage = { name: string; version: string; integrity: string };

export type DebianPackage = { name: string; version: string; architecture: string };

export type SbomInput = {
  /** The artifact the SBOM describes, as metadata.component: its file name, and the product version. */
  artifact: { name: string; version: string; kind: "deb" | "image" };
  npm: readonly NpmPackage[];
  debian: readonly DebianPackage[];
  /** Debian release of the packages, for their purl (`debian-12`). */
  distro: string;
  /** Deno: shipped in the artifact (the image), or needed beside it (the .deb's source form). */
  deno: { version: string; shipped: boolean; sha256?: string };
  bpfObject: { name: string; sha256: string };
  /** An RFC 4122 serial number (urn:uuid:...) and a time, given so that a build can be reproduced. */
  serialNumber: string;
  timestamp: Date;
};

/**
 * The npm packages of a deno.lock (version 5 format): one per name@version, the peer suffix of a key
 * (`_peer@1.0.0`) dropped. A key that is not name@version is an Error naming it.
 */
export function npmPackagesOfLock(lock: { npm?: Record<string, { integrity?: string }> }): NpmPackage[] {
  const byId = new Map<string, NpmPackage>();
  for (const [key, entry] of Object.entries(lock.npm ?? {})) {
    const match = /^(@?[^@]+)@([^_]+)(?:_.*)?$/.exec(key);
    if (match === null || typeof entry.integrity !== "string") {
      throw new Error(`deno.lock: npm entry ${JSON.stringify(key)} is not name@version with an integrity`);
    }
    const [, name, version] = match as unknown as [string, string, string];
    byId.set(`${name}@${version}`, { name, version, integrity: entry.integrity });
  }
  return [...byId.values()].sort((a, b) => `${a.name}@${a.version}`.localeCompare(`${b.name}@${b.version}`));
}

/** The SBOM as CycloneDX JSON text. */
export function sbomJson(input: SbomInput): string {
  const bom = new Models.Bom({ serialNumber: input.serialNumber });
  bom.metadata.timestamp = input.timestamp;
  bom.metadata.component = new Models.Component(
    input.artifact.kind === "image" ? Enums.ComponentType.Container : Enums.ComponentType.Application,
    input.artifact.name,
    { version: input.artifact.version, bomRef: "aegisbpf" },
  );
  for (const npm of input.npm) bom.components.add(npmComponent(npm));
  for (const debian of input.debian) bom.components.add(debianComponent(debian, input.distro));
  bom.components.add(denoComponent(input.deno));
  bom.components.add(
    new Models.Component(Enums.ComponentType.File, input.bpfObject.name, {
      bomRef: `file:${input.bpfObject.name}`,
      hashes: new Models.HashDictionary([[Enums.HashAlgorithm["SHA-256"], input.bpfObject.sha256]]),
      description: "the eBPF programs and maps aegisbpf loads (compiled from bpf/)",
    }),
  );
  const serializer = new Serialize.JsonSerializer(new Serialize.JSON.Normalize.Factory(Spec.Spec1dot6));
  return serializer.serialize(bom, { sortLists: true, space: 2 }) + "\n";
}

function npmComponent({ name, version, integrity }: NpmPackage): Models.Component {
  const [algorithm, digest] = sri(integrity);
  const [group, bare] = name.startsWith("@")
    ? name.slice(1).split("/", 2) as [string, string]
    : [undefined, name];
  const purl = new PackageURL(
    "npm",
    group === undefined ? undefined : `@${group}`,
    bare,
    version,
    undefined,
    undefined,
  );
  return new Models.Component(Enums.ComponentType.Library, bare, {
    ...(group === undefined ? {} : { group: `@${group}` }),
    version,
    bomRef: purl.toString(),
    purl: purl.toString(),
    scope: Enums.ComponentScope.Required,
    hashes: new Models.HashDictionary([[algorithm, digest]]),
  });
}

function debianComponent({ name, version, architecture }: DebianPackage, distro: string): Models.Component {
  const purl = new PackageURL("deb", "debian", name, version, { arch: architecture, distro }, undefined);
  return new Models.Component(Enums.ComponentType.Library, name, {
    version,
    bomRef: purl.toString(),
    purl: purl.toString(),
    scope: Enums.ComponentScope.Required,
  });
}

function denoComponent(deno: SbomInput["deno"]): Models.Component {
  const purl = new PackageURL("npm", "@deno", "linux-x64-glibc", deno.version, undefined, undefined);
  return new Models.Component(Enums.ComponentType.Application, "deno", {
    version: deno.version,
    bomRef: "deno",
    purl: purl.toString(),
    scope: Enums.ComponentScope.Required,
    description: deno.shipped
      ? "the Deno runtime, /usr/bin/deno in the image (npm @deno/linux-x64-glibc)"
      : "the Deno runtime the package's launcher runs; not shipped: install it (npm install -g deno)",
    ...(deno.sha256 === undefined
      ? {}
      : { hashes: new Models.HashDictionary([[Enums.HashAlgorithm["SHA-256"], deno.sha256]]) }),
  });
}

/** An SRI integrity string as CycloneDX's algorithm and hex digest. */
function sri(integrity: string): [Enums.HashAlgorithm, string] {
  const match = /^(sha512|sha384|sha256|sha1)-([A-Za-z0-9+/]+={0,2})$/.exec(integrity);
  if (match === null) throw new Error(`deno.lock: integrity ${JSON.stringify(integrity)} is not an SRI hash`);
  const algorithm = {
    sha512: Enums.HashAlgorithm["SHA-512"],
    sha384: Enums.HashAlgorithm["SHA-384"],
    sha256: Enums.HashAlgorithm["SHA-256"],
    sha1: Enums.HashAlgorithm["SHA-1"],
  }[match[1] as "sha512" | "sha384" | "sha256" | "sha1"];
  return [algorithm, Uint8Array.fromBase64(match[2]!).toHex()];
}
