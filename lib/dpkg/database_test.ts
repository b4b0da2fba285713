import assert from "node:assert/strict";
import { divertedPath, installedPackages, parseDiversions, parseMd5sums } from "./database.ts";

const STATUS = `Package: bash
Status: install ok installed
Architecture: amd64
Multi-Arch: foreign
Description: shell
 continued line: Package: not-a-package

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same

Package: gone
Status: deinstall ok config-files
Architecture: amd64

Package: half
Status: install reinstreq half-installed
Architecture: all

Package: held
Status: hold ok installed
Architecture: all
`;

Deno.test("installedPackages() keeps installed packages, named PKG:ARCH for Multi-Arch: same", () => {
  assert.deepEqual(installedPackages(STATUS), [
    { name: "bash", infoName: "bash", arch: "amd64" },
    { name: "libc6", infoName: "libc6:amd64", arch: "amd64" },
    { name: "held", infoName: "held", arch: "all" },
  ]);
});

Deno.test("parseMd5sums() reads paths with spaces, and lists lines that are not MD5 lines", () => {
  const text = "d41d8cd98f00b204e9800998ecf8427e  usr/bin/a b\n" +
    "0123456789ABCDEF0123456789abcdef  usr/lib/x86_64-linux-gnu/libz.so.1.2.13\n" +
    "not a line\n\n";
  assert.deepEqual(parseMd5sums(text), {
    files: [
      { path: "/usr/bin/a b", md5: "d41d8cd98f00b204e9800998ecf8427e" },
      { path: "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", md5: "0123456789abcdef0123456789abcdef" },
    ],
    bad: ["not a line"],
  });
});

Deno.test("divertedPath() sends other packages' file to the diverted name, not the diverter's own", () => {
  const diversions = parseDiversions(
    "/usr/bin/pg_config\n/usr/bin/pg_config.libpq-dev\npostgresql-common\n/usr/bin/x\n/usr/bin/x.orig\n:\n",
  );
  assert.deepEqual(diversions[1], { from: "/usr/bin/x", to: "/usr/bin/x.orig", by: ":" });
  const byPath = new Map(diversions.map((d) => [d.from, d]));
  assert.equal(divertedPath("/usr/bin/pg_config", "libpq-dev", byPath), "/usr/bin/pg_config.libpq-dev");
  assert.equal(divertedPath("/usr/bin/pg_config", "postgresql-common", byPath), "/usr/bin/pg_config");
  // A local diversion (by the admin) moves every package's file.
  assert.equal(divertedPath("/usr/bin/x", "x", byPath), "/usr/bin/x.orig");
  assert.equal(divertedPath("/usr/bin/y", "y", byPath), "/usr/bin/y");
});
