/** The BTF types of the built BPF object, as bpftool dumps them: for the tests that check mirrors. */

export type BtfType = {
  id: number;
  kind: string;
  name: string;
  size?: number;
  members?: { name: string; bits_offset: number }[];
  values?: { name: string; val: number }[];
};

const OBJECT = new URL("../bpf/build/aegis.bpf.o", import.meta.url);

export async function objectBtf(): Promise<BtfType[]> {
  const output = await new Deno.Command("bpftool", {
    args: ["--json", "btf", "dump", "file", OBJECT.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `bpftool could not read the BTF of ${OBJECT.pathname} (run deno task build:bpf): ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
  return (JSON.parse(new TextDecoder().decode(output.stdout)) as { types: BtfType[] }).types;
}
