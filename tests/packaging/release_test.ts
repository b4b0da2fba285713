/**
 * A whole release, built once by scripts/release.sh into a temporary directory: the image (its layers,
 * config and files, and `doctor` and `health` run in it with the DaemonSet's capabilities), the SBOMs
 * (CycloneDX schema, deno.lock entry by entry, dpkg, Deno, the BPF object), and `release verify` with the
 * openssl one-liner of packaging/README.md, each refusing every kind of tampering.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Spec, Validation } from "@cyclonedx/cyclonedx-library";
import { generateKeyPair } from "../../lib/policy/keys.ts";
import { npmPackagesOfLock } from "../../lib/release/sbom.ts";
import { VERSION } from "../../lib/version.ts";
import { aegisbpf } from "../cli/cli.ts";
import { isLeftover, rootTest, uniqueName } from "../support/privileged.ts";
import { PACKAGING, REPO, run } from "./unit_file.ts";

const DEB = `aegisbpf_${VERSION}_amd64.deb`;
const IMAGE = `aegisbpf-${VERSION}.oci.tar`;
const ENVELOPE = `aegisbpf-${VERSION}.intoto.jsonl`;
const ARTIFACTS = [
  DEB,
  `aegisbpf_${VERSION}_amd64.cdx.json`,
  IMAGE,
  `aegisbpf-${VERSION}.oci.cdx.json`,
  "aegis.bpf.o",
];
/** The DaemonSet's capabilities (tests/packaging/kubernetes_test.ts holds them to the systemd unit's). */
const DAEMONSET_CAPS = "bpf,perfmon,net_admin,sys_admin,sys_ptrace,dac_read_search,kill,sys_resource";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const RELEASE_PREFIX = "aegisbpf-release-";
let release: Promise<string> | undefined;
const cleanups: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of cleanups) Deno.removeSync(dir, { recursive: true });
});

/** The release directory, built on first use: keys release.key/.pub beside the artifacts. */
function built(): Promise<string> {
  release ??= (async () => {
    // What a killed earlier run left (a release is a few hundred megabytes), then this run's directory.
    const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
    for (const entry of Deno.readDirSync(tmp)) {
      if (isLeftover(entry.name, RELEASE_PREFIX)) {
        Deno.removeSync(`${tmp}/${entry.name}`, { recursive: true });
      }
    }
    const dir = `${tmp}/${uniqueName(RELEASE_PREFIX)}`;
    await Deno.mkdir(dir, { mode: 0o700 });
    cleanups.push(dir);
    const pair = generateKeyPair();
    await Deno.writeTextFile(`${dir}/release.key`, pair.privateKeyPem, { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/release.pub`, pair.publicKeyPem);
    const result = await run(`${REPO}scripts/release.sh`, [
      "--key",
      `${dir}/release.key`,
      "--out",
      `${dir}/dist`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `${dir}/dist/${ENVELOPE}`);
    return dir;
  })();
  return release;
}

async function verify(dir: string, ...args: string[]) {
  return await aegisbpf(["release", "verify", "--key", `${dir}/release.pub`, ...args]);
}

/** A copy of the release's dist/ in a new directory under `dir`, to tamper with. */
async function copyOfDist(dir: string, name: string): Promise<string> {
  const copy = `${dir}/${name}`;
  await Deno.mkdir(copy);
  for (const file of [...ARTIFACTS, ENVELOPE]) {
    if (file !== IMAGE) await Deno.copyFile(`${dir}/dist/${file}`, `${copy}/${file}`);
  }
  return copy;
}

rootTest(
  "[root] release.sh builds the .deb, the image, their SBOMs and a signed statement that release verify accepts",
  async () => {
    const dir = await built();
    const names = [...Deno.readDirSync(`${dir}/dist`)].map((e) => e.name).sort();
    assert.deepEqual(names, [...ARTIFACTS, ENVELOPE].sort());
    const result = await verify(dir, ...ARTIFACTS.map((file) => `${dir}/dist/${file}`));
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const lines = result.stdout.trimEnd().split("\n");
    assert.equal(lines.length, ARTIFACTS.length);
    for (const line of lines) {
      assert.match(line, /: OK: sha256 [0-9a-f]{64} matches the aegisbpf 0\.1\.0 release$/);
    }
    // Without --key: the keys trusted with `keys add`, and the one envelope beside the first file.
    const config = `${dir}/config`;
    assert.equal((await aegisbpf(["keys", "add", `${dir}/release.pub`, "--config-dir", config])).code, 0);
    const trusted = await aegisbpf(["release", "verify", "--config-dir", config, `${dir}/dist/${DEB}`]);
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.match(trusted.stdout, /aegisbpf_0\.1\.0_amd64\.deb: OK/);
    const statement = JSON.parse(
      new TextDecoder().decode(
        Uint8Array.fromBase64(JSON.parse(await Deno.readTextFile(`${dir}/dist/${ENVELOPE}`)).payload),
      ),
    );
    assert.equal(statement._type, "https://in-toto.io/Statement/v1");
    const index = JSON.parse((await run("tar", ["-xOf", `${dir}/dist/${IMAGE}`, "./index.json"])).stdout);
    assert.deepEqual(
      statement.subject.map((s: Json) => s.name).sort(),
      [...ARTIFACTS, `aegisbpf:${VERSION}`].sort(),
    );
    const image = statement.subject.find((s: Json) => s.name === `aegisbpf:${VERSION}`);
    assert.equal(`sha256:${image.digest.sha256}`, index.manifests[0].digest);
  },
);

rootTest(
  "[root] release verify refuses a tampered file, a file not in the statement, a wrong key and a changed envelope",
  async () => {
    const dir = await built();
    const copy = await copyOfDist(dir, "tampered");
    // One byte appended to the BPF object, the SBOM rewritten with a different dependency.
    await Deno.writeFile(`${copy}/aegis.bpf.o`, new Uint8Array([0]), { append: true });
    const sbom = await Deno.readTextFile(`${copy}/${ARTIFACTS[1]}`);
    await Deno.writeTextFile(`${copy}/${ARTIFACTS[1]}`, sbom.replace('"name": "yaml"', '"name": "yamI"'));
    await Deno.writeTextFile(`${copy}/extra.deb`, "not a release file");
    const files = [DEB, ARTIFACTS[1]!, "aegis.bpf.o", "extra.deb"].map((file) => `${copy}/${file}`);
    const tampered = await verify(dir, ...files);
    assert.equal(tampered.code, 1, tampered.stderr);
    const lines = tampered.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /aegisbpf_0\.1\.0_amd64\.deb: OK/);
    assert.match(lines[1]!, /cdx\.json: FAILED: sha256 [0-9a-f]{64} differs from the statement's/);
    assert.match(lines[2]!, /aegis\.bpf\.o: FAILED: sha256 [0-9a-f]{64} differs from the statement's/);
    assert.match(
      lines[3]!,
      /extra\.deb: FAILED: extra\.deb is not a subject of the aegisbpf 0\.1\.0 statement/,
    );

    // Another artifact renamed to the .deb's name: its bytes are not the .deb's.
    await Deno.mkdir(`${copy}/renamed`);
    await Deno.copyFile(`${dir}/dist/${ARTIFACTS[3]}`, `${copy}/renamed/${DEB}`);
    const renamed = await verify(dir, "--envelope", `${copy}/${ENVELOPE}`, `${copy}/renamed/${DEB}`);
    assert.equal(renamed.code, 1);
    assert.match(renamed.stdout, /renamed\/aegisbpf_0\.1\.0_amd64\.deb: FAILED: sha256 .* differs/);

    // Another release key: every file is refused, none verified.
    const other = generateKeyPair();
    await Deno.writeTextFile(`${copy}/other.pub`, other.publicKeyPem);
    const wrongKey = await aegisbpf(["release", "verify", "--key", `${copy}/other.pub`, `${copy}/${DEB}`]);
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stdout, /FAILED: not verified: Bad signature in release envelope .*is not trusted/);

    // A statement for other subjects, signed by the right key: the real files are not in it.
    const foreign = `${copy}/foreign.intoto.jsonl`;
    await Deno.writeTextFile(`${copy}/old.deb`, "an older release");
    const signed = await run("deno", [
      "run",
      "--quiet",
      "--allow-read",
      `--allow-write=${foreign}`,
      "--allow-run=tar",
      `${REPO}scripts/release.ts`,
      "sign",
      "--key",
      `${dir}/release.key`,
      "--out",
      foreign,
      `${copy}/old.deb`,
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const otherSubjects = await verify(dir, "--envelope", foreign, `${copy}/${DEB}`);
    assert.equal(otherSubjects.code, 1);
    assert.match(otherSubjects.stdout, /FAILED: aegisbpf_0\.1\.0_amd64\.deb is not a subject/);

    // The envelope's payload swapped for the foreign statement's: the signature no longer verifies.
    const envelope = JSON.parse(await Deno.readTextFile(`${copy}/${ENVELOPE}`));
    envelope.payload = JSON.parse(await Deno.readTextFile(foreign)).payload;
    await Deno.writeTextFile(`${copy}/swapped.intoto.jsonl`, JSON.stringify(envelope));
    const swapped = await verify(dir, "--envelope", `${copy}/swapped.intoto.jsonl`, `${copy}/old.deb`);
    assert.equal(swapped.code, 1);
    assert.match(swapped.stdout, /old\.deb: FAILED: not verified: .*does not verify/);

    // Truncated, or not an envelope at all: bad input, exit 2, naming the file.
    const text = await Deno.readTextFile(`${copy}/${ENVELOPE}`);
    await Deno.writeTextFile(`${copy}/truncated.intoto.jsonl`, text.slice(0, text.length / 2));
    const truncated = await verify(dir, "--envelope", `${copy}/truncated.intoto.jsonl`, `${copy}/${DEB}`);
    assert.equal(truncated.code, 2);
    assert.match(truncated.stderr, /Invalid release envelope .*truncated\.intoto\.jsonl: not valid JSON/);
    const missing = await verify(dir, "--envelope", `${copy}/${ENVELOPE}`, `${copy}/nonexistent.deb`);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nonexistent\.deb: no such file/);
    // A FIFO named as an artifact is refused, not opened (which would wait for a writer forever).
    assert.equal((await run("mkfifo", [`${copy}/fifo.deb`])).code, 0);
    const fifo = await verify(dir, "--envelope", `${copy}/${ENVELOPE}`, `${copy}/fifo.deb`);
    assert.equal(fifo.code, 2);
    assert.match(fifo.stderr, /fifo\.deb: is not a regular file/);
    const notKey = await aegisbpf(["release", "verify", "--key", `${copy}/${DEB}`, `${copy}/${DEB}`]);
    assert.equal(notKey.code, 2);
  },
);

rootTest(
  "[root] the openssl one-liner of packaging/README.md verifies the release, and fails on a tampered file or statement",
  async () => {
    const dir = await built();
    const readme = await Deno.readTextFile(`${PACKAGING}README.md`);
    const block = /<!-- release-verify-openssl -->\n+```sh\n([^\n]+)\n```/.exec(readme);
    assert.ok(block, "packaging/README.md has the openssl one-liner");
    const copy = await copyOfDist(dir, "openssl");
    await Deno.copyFile(`${dir}/dist/${IMAGE}`, `${copy}/${IMAGE}`);
    await Deno.copyFile(`${dir}/release.pub`, `${copy}/release.pub`);
    const oneLiner = () => run("bash", ["-c", block[1]!], { cwd: copy });
    const good = await oneLiner();
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /Signature Verified Successfully/);
    for (const file of ARTIFACTS) assert.match(good.stdout, new RegExp(`${file.replaceAll(".", "\\.")}: OK`));

    await Deno.writeFile(`${copy}/aegis.bpf.o`, new Uint8Array([0]), { append: true });
    const changedFile = await oneLiner();
    assert.notEqual(changedFile.code, 0);
    assert.match(changedFile.stdout, /aegis\.bpf\.o: FAILED/);

    const envelope = JSON.parse(await Deno.readTextFile(`${copy}/${ENVELOPE}`));
    const statement = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(envelope.payload)));
    statement.subject[0].digest.sha256 = "0".repeat(64);
    envelope.payload = new TextEncoder().encode(JSON.stringify(statement)).toBase64();
    await Deno.writeTextFile(`${copy}/${ENVELOPE}`, JSON.stringify(envelope));
    const changedStatement = await oneLiner();
    assert.notEqual(changedStatement.code, 0);
    assert.match(changedStatement.stdout + changedStatement.stderr, /Signature Verification Failure/);
  },
);

rootTest(
  "[root] the SBOMs validate against CycloneDX 1.6 and list deno.lock, dpkg, Deno and the BPF object",
  async () => {
    const dir = await built();
    const validator = new Validation.JsonStrictValidator(Spec.Version.v1dot6);
    const lock = npmPackagesOfLock(JSON.parse(await Deno.readTextFile(`${REPO}deno.lock`)));
    const rawLock = JSON.parse(await Deno.readTextFile(`${REPO}deno.lock`));
    assert.ok(lock.length >= Object.keys(rawLock.specifiers).length);
    const bpfSha = createHash("sha256").update(await Deno.readFile(`${REPO}bpf/build/aegis.bpf.o`)).digest(
      "hex",
    );
    for (const [file, kind] of [[ARTIFACTS[1]!, "deb"], [ARTIFACTS[3]!, "image"]] as const) {
      const text = await Deno.readTextFile(`${dir}/dist/${file}`);
      assert.equal(await validator.validate(text), null, `${file} is valid CycloneDX 1.6`);
      const bom = JSON.parse(text);
      assert.equal(bom.specVersion, "1.6");
      const components = bom.components as Json[];
      const npm = components.filter((c) => c.purl?.startsWith("pkg:npm/") && c.name !== "deno");
      // Entry by entry: every npm package of deno.lock with its integrity, and nothing else.
      assert.equal(npm.length, lock.length, file);
      for (const entry of lock) {
        const name = entry.name.startsWith("@") ? entry.name.split("/")[1] : entry.name;
        const found = npm.find((c) => c.name === name && c.version === entry.version);
        assert.ok(found, `${file}: ${entry.name}@${entry.version}`);
        const sha512 = Uint8Array.fromBase64(entry.integrity.replace(/^sha512-/, "")).toHex();
        assert.deepEqual(found.hashes, [{ alg: "SHA-512", content: sha512 }], entry.name);
      }
      const bpf = components.find((c) => c.name === "aegis.bpf.o");
      assert.deepEqual(bpf?.hashes, [{ alg: "SHA-256", content: bpfSha }]);
      const deno = components.find((c) => c.name === "deno");
      assert.match(deno?.version, /^2\.\d+\.\d+$/);
      const debian = components.filter((c) => c.purl?.startsWith("pkg:deb/debian/"));
      if (kind === "deb") {
        // The package's Depends: at the versions dpkg has here.
        for (const name of ["libbpf1", "libc6"]) {
          const version = (await run("dpkg-query", ["-W", "-f=${Version}", name])).stdout;
          assert.equal(debian.find((c) => c.name === name)?.version, version, name);
        }
      } else {
        assert.ok(debian.length > 50, "every package of the image's root");
        assert.ok(debian.some((c) => c.name === "libbpf1"));
        assert.ok(deno?.hashes?.[0]?.content?.length === 64, "the image's deno binary by sha256");
      }
    }
    // The .deb carries its SBOM, the same as the one beside it.
    const inside = await run("sh", [
      "-c",
      `dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./usr/share/doc/aegisbpf/aegisbpf.cdx.json`,
      "sh",
      `${dir}/dist/${DEB}`,
    ]);
    assert.equal(inside.stdout, await Deno.readTextFile(`${dir}/dist/${ARTIFACTS[1]}`));
    // And the validator can fail: an SBOM without its spec version is refused.
    assert.notEqual(await validator.validate(JSON.stringify({ bomFormat: "CycloneDX" })), null);
  },
);

rootTest(
  "[root] the image has two layers, the DaemonSet's tag and entrypoint, and runs doctor and health with its capabilities",
  async () => {
    const dir = await built();
    const layout = `${dir}/layout`;
    await Deno.mkdir(layout);
    assert.equal((await run("tar", ["-C", layout, "-xf", `${dir}/dist/${IMAGE}`])).code, 0);
    const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
    assert.equal(index.manifests.length, 1);
    const annotations = index.manifests[0].annotations;
    assert.equal(annotations["org.opencontainers.image.ref.name"], VERSION);
    assert.equal(annotations["io.containerd.image.name"], `docker.io/library/aegisbpf:${VERSION}`);
    const blob = (digest: string) =>
      Deno.readTextFile(`${layout}/blobs/sha256/${digest.replace("sha256:", "")}`);
    const manifest = JSON.parse(await blob(index.manifests[0].digest));
    assert.equal(manifest.layers.length, 2, "the Debian root, then aegisbpf");
    const config = JSON.parse(await blob(manifest.config.digest));
    assert.deepEqual(config.config.Entrypoint, ["/usr/bin/aegisbpf"]);
    assert.deepEqual(config.config.Cmd, ["doctor"]);
    assert.ok(config.config.Env.includes("DENO_DIR=/tmp/deno"));
    assert.equal(config.config.Labels["org.opencontainers.image.version"], VERSION);

    const bundle = `${dir}/bundle`;
    const unpacked = await run("umoci", ["unpack", "--image", `${layout}:${VERSION}`, bundle]);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    const root = `${bundle}/rootfs`;
    for (
      const file of [
        "usr/bin/aegisbpf",
        "usr/bin/deno",
        "bin/sh",
        "usr/share/doc/aegisbpf/aegisbpf-image.cdx.json",
      ]
    ) {
      assert.ok(Deno.statSync(`${root}/${file}`).isFile, file);
    }
    // The .deb's source form (no dist/aegisbpf from `deno task compile`) carries the tree and the BPF
    // object; the binary form has them inside /usr/bin/aegisbpf.
    const head = new TextDecoder().decode((await Deno.readFile(`${root}/usr/bin/aegisbpf`)).subarray(1, 4));
    if (head !== "ELF") assert.ok(Deno.statSync(`${root}/usr/lib/aegisbpf/bpf/build/aegis.bpf.o`).size > 0);
    assert.ok(
      [...Deno.readDirSync(`${root}/usr/lib/x86_64-linux-gnu`)].some((e) => e.name.startsWith("libbpf.so.1")),
    );

    // The DaemonSet's mounts in a private mount and pid namespace (nothing reaches the host's bpffs), a
    // read-only /sys, and the bounding set cut to its capabilities: root in the pod holds only those.
    const inImage = (command: string) =>
      run("unshare", [
        "--mount",
        "--pid",
        "--fork",
        "--propagation",
        "private",
        "sh",
        "-ec",
        `R="$1"
      mount -t proc proc "$R/proc"; mount --rbind -o ro /sys "$R/sys"; mount -t bpf bpf "$R/sys/fs/bpf"
      mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"; mount -t tmpfs tmpfs "$R/dev"
      mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/urandom" c 1 9
      for d in var/lib/aegisbpf etc/aegisbpf run/aegisbpf; do mkdir -p "$R/$d"; mount -t tmpfs -o mode=0700 tmpfs "$R/$d"; done
      exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DENO_DIR=/tmp/deno \\
        setpriv --bounding-set=-all,+${DAEMONSET_CAPS.replaceAll(",", ",+")} /bin/sh -c "$2"`,
        "sh",
        root,
        command,
      ]);
    const caps = await inImage("grep CapBnd /proc/self/status");
    assert.equal(caps.code, 0, caps.stderr);
    // BPF(39) PERFMON(38) SYS_RESOURCE(24) SYS_ADMIN(21) SYS_PTRACE(19) NET_ADMIN(12) KILL(5) DAC_READ_SEARCH(2),
    // less what this machine's own bounding set lacks.
    const host = BigInt(
      `0x${/CapBnd:\s+([0-9a-f]+)/.exec(await Deno.readTextFile("/proc/self/status"))![1]}`,
    );
    const bits = [39n, 38n, 24n, 21n, 19n, 12n, 5n, 2n].reduce((mask, bit) => mask | (1n << bit), 0n);
    assert.equal(BigInt(`0x${/CapBnd:\s+([0-9a-f]+)/.exec(caps.stdout)![1]}`), bits & host);
    const doctor = await inImage("aegisbpf doctor");
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /cgroup_skb\/egress .* loads/);
    assert.match(doctor.stdout, /ready: /);
    const health = await inImage("aegisbpf health --json");
    assert.equal(health.code, 1, health.stderr);
    assert.match(health.stdout, /"schema":1/);
  },
);
