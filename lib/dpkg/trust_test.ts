import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DpkgDatabaseError, resolveDpkgTrust } from "./trust.ts";

const ELF = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 9, 9, 9]);
const md5 = (bytes: Uint8Array | string) => createHash("md5").update(bytes).digest("hex");

/**
 * A private root: merged /usr (/bin -> usr/bin), a dpkg database in var/lib/dpkg with packages `tool`
 * (an executable with a space in its name, a library without exec bit, a data file, a file changed since
 * install), `libz:amd64` (Multi-Arch: same), `old` (no md5sums), and a diversion of tool's /usr/bin/div.
 */
function fixture(): { root: string; admin: string } {
  const root = Deno.makeTempDirSync({ prefix: "aegis-dpkg-" });
  const admin = join(root, "var/lib/dpkg");
  Deno.mkdirSync(join(admin, "info"), { recursive: true });
  Deno.mkdirSync(join(root, "usr/bin"), { recursive: true });
  Deno.mkdirSync(join(root, "usr/lib"), { recursive: true });
  Deno.mkdirSync(join(root, "usr/share"), { recursive: true });
  Deno.symlinkSync("usr/bin", join(root, "bin"));
  const file = (path: string, content: Uint8Array | string, mode: number) => {
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
    Deno.writeFileSync(join(root, path), bytes, { mode });
    Deno.chmodSync(join(root, path), mode);
  };
  file("usr/bin/my tool", "#!/bin/sh\necho hi\n", 0o755);
  file("usr/lib/libtool.so.1", ELF, 0o644);
  file("usr/share/data.txt", "data", 0o644);
  file("usr/bin/changed", "#!/bin/sh\nevil\n", 0o755);
  file("usr/bin/div.real", "#!/bin/sh\ndiverted\n", 0o755);
  file("usr/bin/div", "#!/bin/sh\nlocal\n", 0o755);
  file("usr/lib/libz.so.1", ELF.slice(0, 10), 0o644);
  file("usr/bin/old", "#!/bin/sh\nold\n", 0o755);
  Deno.writeTextFileSync(
    join(admin, "status"),
    ["tool", "old"].map((p) => `Package: ${p}\nStatus: install ok installed\nArchitecture: amd64\n`).join(
      "\n",
    ) +
      "\nPackage: libz\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\n",
  );
  Deno.writeTextFileSync(
    join(admin, "info/tool.md5sums"),
    [
      // Listed through the /bin symlink: counted once, at its real path.
      `${md5("#!/bin/sh\necho hi\n")}  bin/my tool`,
      `${md5("#!/bin/sh\necho hi\n")}  usr/bin/my tool`,
      `${md5(ELF)}  usr/lib/libtool.so.1`,
      `${md5("data")}  usr/share/data.txt`,
      `${md5("#!/bin/sh\ngood\n")}  usr/bin/changed`,
      `${md5("#!/bin/sh\ndiverted\n")}  usr/bin/div`,
      `${md5("x")}  usr/bin/not-installed`,
    ].join("\n") + "\n",
  );
  Deno.writeTextFileSync(
    join(admin, "info/libz:amd64.md5sums"),
    `${md5(ELF.slice(0, 10))}  usr/lib/libz.so.1\n`,
  );
  Deno.writeTextFileSync(join(admin, "info/old.list"), "/.\n/usr\n/usr/bin\n/usr/bin/old\n");
  Deno.writeTextFileSync(join(admin, "diversions"), "/usr/bin/div\n/usr/bin/div.real\n:\n");
  return { root, admin };
}

const later = () => Date.now() + 60_000;

Deno.test("resolveDpkgTrust() trusts matching files that could run, once each, and lists the rest", () => {
  const { root, admin } = fixture();
  try {
    const found = resolveDpkgTrust({ root, adminDir: admin, now: later });
    const real = Deno.realPathSync(root);
    assert.deepEqual(found.trusted.map((file) => file.path), [
      `${real}/usr/bin/div.real`,
      `${real}/usr/bin/my tool`,
      `${real}/usr/lib/libtool.so.1`,
      `${real}/usr/lib/libz.so.1`,
    ]);
    assert.deepEqual(
      found.untrusted.map(({ path, package: pkg, reason }) => [path.slice(root.length), pkg, reason]),
      [
        ["/usr/bin/changed", "tool", "md5-mismatch"],
        ["/usr/bin/old", "old", "no-md5"],
      ],
    );
    assert.equal(found.stats.missing, 1);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("resolveDpkgTrust() hashes again only what changed since the cache was written", () => {
  const { root, admin } = fixture();
  const cacheFile = join(root, "cache.json");
  try {
    const first = resolveDpkgTrust({ root, adminDir: admin, cacheFile, now: later });
    assert.equal(first.stats.hashed, 5);
    const second = resolveDpkgTrust({ root, adminDir: admin, cacheFile, now: later });
    assert.equal(second.stats.hashed, 0);
    assert.deepEqual(second.trusted, first.trusted);
    assert.deepEqual(second.untrusted, first.untrusted);
    // Changed content (same size): the key differs (ctime), so it is hashed again and no longer trusted.
    Deno.writeTextFileSync(join(root, "usr/bin/my tool"), "#!/bin/sh\necho HI\n");
    const third = resolveDpkgTrust({ root, adminDir: admin, cacheFile, now: later });
    assert.equal(third.stats.hashed, 1);
    assert.ok(!third.trusted.some((file) => file.path.endsWith("/my tool")));
    assert.ok(
      third.untrusted.some((file) => file.path.endsWith("/my tool") && file.reason === "md5-mismatch"),
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("resolveDpkgTrust() never reuses an entry hashed within a second of the file's change", () => {
  const { root, admin } = fixture();
  const cacheFile = join(root, "cache.json");
  try {
    resolveDpkgTrust({ root, adminDir: admin, cacheFile });
    assert.equal(resolveDpkgTrust({ root, adminDir: admin, cacheFile }).stats.hashed, 5);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("resolveDpkgTrust() refuses a missing or unreadable database, naming the file", () => {
  const { root, admin } = fixture();
  try {
    Deno.removeSync(join(admin, "status"));
    assert.throws(
      () => resolveDpkgTrust({ root, adminDir: admin }),
      (error) =>
        error instanceof DpkgDatabaseError && error.message.includes(`${admin}/status does not exist`),
    );
    Deno.mkdirSync(join(admin, "status"));
    assert.throws(() => resolveDpkgTrust({ root, adminDir: admin }), DpkgDatabaseError);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
