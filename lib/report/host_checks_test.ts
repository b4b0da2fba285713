import assert from "node:assert/strict";
import {
  effectiveCapabilities,
  findTextfileDir,
  lockdownMode,
  mountTypeOf,
  TEXTFILE_DIRS,
} from "./host_checks.ts";

Deno.test("effectiveCapabilities() decodes CapEff by bit, naming bits the table lacks", () => {
  const status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000201000\nCapBnd:\t0\n";
  assert.deepEqual(effectiveCapabilities(status), ["net_admin", "sys_admin", "perfmon", "bpf"]);
  assert.deepEqual(effectiveCapabilities("CapEff:\t0000040000000001\n"), ["chown", "cap_42"]);
  assert.throws(() => effectiveCapabilities("Name: x\n"), /no CapEff/);
});

Deno.test("lockdownMode() reads the bracketed mode", () => {
  assert.equal(lockdownMode("none [integrity] confidentiality\n"), "integrity");
  assert.equal(lockdownMode("[none] integrity confidentiality\n"), "none");
  assert.equal(lockdownMode(""), undefined);
});

Deno.test("mountTypeOf() takes the longest mount point holding the path, not a prefix of a name", () => {
  const mounts = "/dev/sda / ext4 rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n" +
    "bpf /tmp/b bpf rw 0 0\n";
  assert.equal(mountTypeOf(mounts, "/sys/fs/bpf"), "bpf");
  assert.equal(mountTypeOf(mounts, "/sys/fs/bpf/aegisbpf"), "bpf");
  assert.equal(mountTypeOf(mounts, "/tmp/b"), "bpf");
  assert.equal(mountTypeOf(mounts, "/tmp/bb"), "tmpfs");
  assert.equal(mountTypeOf(mounts, "/sys/fs/bpfx"), "ext4");
});

Deno.test("findTextfileDir() knows Debian's node-exporter directory first, then upstream's, else names both", () => {
  assert.deepEqual(TEXTFILE_DIRS, [
    "/var/lib/prometheus/node-exporter",
    "/var/lib/node_exporter/textfile_collector",
  ]);
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-textfile-" });
  try {
    const [debian, upstream] = [`${dir}/prometheus/node-exporter`, `${dir}/node_exporter/textfile_collector`];
    assert.deepEqual(findTextfileDir([debian, upstream]), [debian, upstream]);
    Deno.mkdirSync(upstream, { recursive: true });
    assert.equal(findTextfileDir([debian, upstream]), upstream);
    Deno.mkdirSync(debian, { recursive: true });
    assert.equal(findTextfileDir([debian, upstream]), debian);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
