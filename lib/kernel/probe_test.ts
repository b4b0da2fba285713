import assert from "node:assert/strict";
import { decideAreas, type HostFacts, type LoadProbe, PROGRAM_KINDS } from "./probe.ts";

const ok = (name: string): LoadProbe => ({ name, kind: "", ok: true, ms: 1 });
const refused = (name: string, errnoName = "EPERM", errno = 1): LoadProbe => ({
  name,
  kind: "",
  ok: false,
  ms: 1,
  errno,
  errnoName,
  error: `bpf_object__load (${name}) failed: ${errnoName}`,
});
const ALL = ["maps", ...Object.keys(PROGRAM_KINDS)];
const probes = (...failures: LoadProbe[]) =>
  ALL.map((name) => failures.find((failure) => failure.name === name) ?? ok(name));
const HOST: HostFacts = { activeLsms: ["lockdown", "capability", "bpf"], cgroup2: "/sys/fs/cgroup" };

Deno.test("decideAreas() says enforce everywhere when every load works and bpf is an active LSM", () => {
  const areas = decideAreas(probes(), HOST);
  for (const area of Object.values(areas)) assert.equal(area.verdict, "enforce");
});

Deno.test("decideAreas() makes file and exec audit-only when LSM loads are refused although bpf is listed", () => {
  const areas = decideAreas(probes(refused("aegis_file_open"), refused("aegis_bprm_check")), HOST);
  assert.equal(areas.file.verdict, "audit-only");
  assert.equal(areas.exec.verdict, "audit-only");
  assert.match(areas.file.reason, /EPERM although bpf is listed in \/sys\/kernel\/security\/lsm; audited/);
  assert.match(areas.file.reason, /report opens only: an open of a denied file \(file\.open\)/);
  assert.match(
    areas.file.reason,
    /an open for writing of a protected one \(file\.write open-write\); a change made without opening .* and a new, removed or renamed entry in a protected directory are neither refused nor reported/,
  );
  assert.doesNotMatch(areas.exec.reason, /opens only/);
  // What the exec tracepoint cannot report (the allowlist's fallback says so in doctor and health).
  assert.match(
    areas.exec.reason,
    /execs only: a library or file mapped executable .* and a #! script itself/,
  );
  assert.match(areas.exec.remediation, /boot a kernel that lets BPF-LSM programs load/);
  assert.equal(areas.egress.verdict, "enforce");
});

Deno.test("decideAreas() makes file audit-only when LSM programs load but bpf is not an active LSM", () => {
  const areas = decideAreas(probes(), { ...HOST, activeLsms: ["capability", "apparmor"] });
  assert.equal(areas.file.verdict, "audit-only");
  assert.match(areas.file.reason, /BPF LSM not active \(lsm=capability,apparmor\)/);
  assert.match(areas.file.remediation, /lsm=capability,apparmor,bpf/);
});

Deno.test("decideAreas() says unavailable when neither LSM nor the tracepoint fallback loads", () => {
  const areas = decideAreas(
    probes(refused("aegis_file_open"), refused("aegis_tp_openat2", "EINVAL", 22)),
    HOST,
  );
  assert.equal(areas.file.verdict, "unavailable");
  assert.match(areas.file.reason, /fallback does not load either \(aegis_tp_openat2 EINVAL\)/);
  assert.equal(areas.exec.verdict, "enforce");
});

Deno.test("decideAreas() needs cgroup v2 for egress and bind, and each program of them", () => {
  const noCgroup = decideAreas(probes(), { ...HOST, cgroup2: undefined });
  assert.equal(noCgroup.egress.verdict, "unavailable");
  assert.match(noCgroup.bind.remediation, /mount -t cgroup2/);
  const noSendmsg6 = decideAreas(probes(refused("aegis_sendmsg6", "EINVAL", 22)), HOST);
  assert.equal(noSendmsg6.egress.verdict, "unavailable");
  assert.equal(noSendmsg6.bind.verdict, "enforce");
});

Deno.test("decideAreas() says every area is unavailable when the maps cannot be created, and to run as root", () => {
  const areas = decideAreas(probes(refused("maps")), HOST);
  for (const area of Object.values(areas)) {
    assert.equal(area.verdict, "unavailable");
    assert.match(area.remediation, /^run as root/);
  }
});

Deno.test("decideAreas() says when SCTP binds go unjudged: bind still enforces for the cgroup hooks", () => {
  const judged = decideAreas(probes(), HOST);
  assert.match(judged.bind.reason, /SCTP binds by aegis_socket_bind, aegis_sctp_bindx/);
  const noLsm = decideAreas(probes(refused("aegis_socket_bind"), refused("aegis_sctp_bindx")), HOST);
  assert.equal(noLsm.bind.verdict, "enforce");
  assert.match(
    noLsm.bind.reason,
    /SCTP binds are not judged \(BPF-LSM: aegis_socket_bind, aegis_sctp_bindx do not load\)/,
  );
  const notActive = decideAreas(probes(), { ...HOST, activeLsms: ["capability"] });
  assert.match(notActive.bind.reason, /SCTP binds are not judged \(BPF-LSM: bpf is not an active LSM\)/);
});
