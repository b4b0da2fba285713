import assert from "node:assert/strict";
import { fileContains } from "./file_search.ts";

const encode = (text: string) => new TextEncoder().encode(text);

function withFile(content: string, fn: (path: string) => void): void {
  const path = Deno.makeTempFileSync({ prefix: "aegisbpf-file-search-" });
  try {
    Deno.writeTextFileSync(path, content);
    fn(path);
  } finally {
    Deno.removeSync(path);
  }
}

Deno.test("fileContains() finds a needle wherever it falls across the reads, and nothing that is not there", () => {
  const needle = "\0bpf_sock_destroy\0";
  for (const chunk of [1, 3, 7, 16, 64 * 1024]) {
    for (let at = 0; at < 40; at++) {
      withFile(`${"x".repeat(at)}${needle}${"y".repeat(5)}`, (path) => {
        assert.equal(fileContains(path, encode(needle), chunk), true, `chunk ${chunk}, at ${at}`);
      });
    }
    withFile(`${"x".repeat(30)}\0bpf_sock_destro\0y${needle.slice(1, -1)}`, (path) => {
      assert.equal(fileContains(path, encode(needle), chunk), false, `chunk ${chunk}`);
    });
  }
});

Deno.test("fileContains() reads an empty file as holding no needle", () => {
  withFile("", (path) => assert.equal(fileContains(path, encode("a")), false));
});
