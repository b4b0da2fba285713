import assert from "node:assert/strict";
import { splitSamples } from "./perf_split.ts";

const PARTS = [
  { label: "insert", functions: ["htab_lru_map_update_elem"] },
  { label: "lookups", functions: ["__htab_map_lookup_elem"] },
];

// `perf script -F ip,sym` with call chains: one block per sample, leaf first, blank lines between.
const SCRIPT = `
	ffffffff8133a1f0 bpf_lru_pop_free+0x40
	ffffffff8133a2a0 htab_lru_map_update_elem+0x1a0
	ffffffffc0012345 bpf_prog_0123456789abcdef_dns_learn_step+0x55
	ffffffffc0012000 bpf_prog_fedcba9876543210_aegis_skb_dns+0x10

	ffffffff8133b000 __htab_map_lookup_elem+0x20
	ffffffffc0012000 bpf_prog_fedcba9876543210_aegis_skb_dns+0x10

	ffffffffc0012000 bpf_prog_fedcba9876543210_aegis_skb_dns+0x99
	ffffffff81000000 __cgroup_bpf_run_filter_skb+0x100

	ffffffff8133a2a0 htab_lru_map_update_elem+0x1a0
	ffffffffc0019999 bpf_prog_aaaaaaaaaaaaaaaa_aegis_connect4+0x20

	ffffffff81234567 do_syscall_64+0x20
`;

Deno.test("a sample counts for the program only when its chain passes through it, in the first part it names", () => {
  const split = splitSamples(SCRIPT, "aegis_skb_dns", PARTS);
  assert.deepEqual(split.samples, 3);
  assert.deepEqual(split.shares.map((s) => s.label), ["insert", "lookups", split.shares[2]!.label]);
  assert.deepEqual(split.shares.map((s) => s.share), [1 / 3, 1 / 3, 1 / 3]);
});

Deno.test("a program name the kernel cut to 15 characters still matches, another name does not", () => {
  const cut = "\tffffffffc0012000 bpf_prog_fedcba9876543210_aegis_skb_dns_l+0x10\n";
  assert.deepEqual(splitSamples(cut, "aegis_skb_dns_long", PARTS).samples, 1);
  assert.deepEqual(splitSamples(cut, "aegis_skb_dns", PARTS).samples, 0);
});

Deno.test("no sample of the program: no shares to divide", () => {
  const split = splitSamples("\tffffffff81234567 do_syscall_64+0x20\n", "aegis_skb_dns", PARTS);
  assert.deepEqual(split.samples, 0);
  assert.deepEqual(split.shares.every((s) => s.share === 0), true);
});
