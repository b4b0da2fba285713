import assert from "node:assert/strict";
import { join } from "node:path";
import { InputError } from "../errors.ts";
import { openssl } from "./keys_testing.ts";
import { decodePrivateKeyPem, decodePublicKeyPem, encodePrivateKeyPem, encodePublicKeyPem } from "./pem.ts";

async function withOpensslKeys(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-pem-" });
  try {
    await openssl(dir, "genpkey", "-algorithm", "ed25519", "-out", "ed.key");
    await openssl(dir, "pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub");
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function refuses(decode: (text: string, file: string) => unknown, text: string, pattern: RegExp) {
  assert.throws(() => decode(text, "k.pem"), (error: unknown) => {
    assert.ok(error instanceof InputError, `expected InputError, got ${error}`);
    assert.match(error.message, /^Not an Ed25519 key in k\.pem: /);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("decode and encode round-trip openssl's Ed25519 PEM files byte for byte", async () => {
  await withOpensslKeys(async (dir) => {
    const privatePem = await Deno.readTextFile(join(dir, "ed.key"));
    const publicPem = await Deno.readTextFile(join(dir, "ed.pub"));
    assert.equal(encodePrivateKeyPem(decodePrivateKeyPem(privatePem, "ed.key")), privatePem);
    assert.equal(encodePublicKeyPem(decodePublicKeyPem(publicPem, "ed.pub")), publicPem);
  });
});

Deno.test("openssl reads the PEM files encodePrivateKeyPem() and encodePublicKeyPem() write", async () => {
  await withOpensslKeys(async (dir) => {
    const seed = decodePrivateKeyPem(await Deno.readTextFile(join(dir, "ed.key")), "ed.key");
    await Deno.writeTextFile(join(dir, "ours.key"), encodePrivateKeyPem(seed));
    const derived = await openssl(dir, "pkey", "-in", "ours.key", "-pubout");
    assert.equal(derived, await Deno.readTextFile(join(dir, "ed.pub")));
    const publicKey = decodePublicKeyPem(derived, "derived");
    await Deno.writeTextFile(join(dir, "ours.pub"), encodePublicKeyPem(publicKey));
    assert.match(
      await openssl(dir, "pkey", "-pubin", "-in", "ours.pub", "-text", "-noout"),
      /ED25519 Public-Key/,
    );
  });
});

Deno.test("decodePublicKeyPem() tolerates CRLF line ends and surrounding whitespace", async () => {
  await withOpensslKeys(async (dir) => {
    const pem = await Deno.readTextFile(join(dir, "ed.pub"));
    assert.deepEqual(
      decodePublicKeyPem(`\n  ${pem.replaceAll("\n", "\r\n")}\n\n`, "k.pem"),
      decodePublicKeyPem(pem, "k.pem"),
    );
  });
});

Deno.test("decodePublicKeyPem() refuses RSA, EC, X25519 and Ed448 keys, naming the kind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-pem-" });
  try {
    const kinds: Array<[string[], RegExp]> = [
      [["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024"], /it is an RSA key/],
      [["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], /it is an EC key/],
      [["-algorithm", "x25519"], /it is an X25519 key/],
      [["-algorithm", "ed448"], /it is an Ed448 key/],
    ];
    for (const [args, pattern] of kinds) {
      await openssl(dir, "genpkey", ...args, "-out", "other.key");
      const publicPem = await openssl(dir, "pkey", "-in", "other.key", "-pubout");
      refuses(decodePublicKeyPem, publicPem, pattern);
      refuses(decodePrivateKeyPem, await Deno.readTextFile(join(dir, "other.key")), pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a private key where a public one is expected is refused, and the other way round", async () => {
  await withOpensslKeys(async (dir) => {
    const privatePem = await Deno.readTextFile(join(dir, "ed.key"));
    const publicPem = await Deno.readTextFile(join(dir, "ed.pub"));
    refuses(decodePublicKeyPem, privatePem, /it is a private key, not a public one/);
    refuses(decodePrivateKeyPem, publicPem, /it is a public key/);
    refuses(
      decodePublicKeyPem,
      "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
      /private key/,
    );
  });
});

Deno.test("an encrypted private key is refused with a way to decrypt it", async () => {
  await withOpensslKeys(async (dir) => {
    await openssl(dir, "pkey", "-in", "ed.key", "-aes256", "-passout", "pass:x", "-out", "enc.key");
    refuses(decodePrivateKeyPem, await Deno.readTextFile(join(dir, "enc.key")), /it is encrypted/);
  });
});

Deno.test("junk, empty files and broken armour are refused", () => {
  refuses(decodePublicKeyPem, "", /not a PEM file/);
  refuses(decodePublicKeyPem, "hello", /not a PEM file/);
  refuses(decodePublicKeyPem, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI user@host", /not a PEM file/);
  refuses(decodePublicKeyPem, "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----", /not a PEM file/);
  refuses(
    decodePublicKeyPem,
    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    /not a PEM file/,
  );
  refuses(
    decodePublicKeyPem,
    "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
    /not valid base64/,
  );
  refuses(
    decodePublicKeyPem,
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    /"CERTIFICATE"/,
  );
});

Deno.test("extra DER bytes, extra text and a second block are refused", async () => {
  await withOpensslKeys(async (dir) => {
    const publicPem = await Deno.readTextFile(join(dir, "ed.pub"));
    const raw = decodePublicKeyPem(publicPem, "ed.pub");
    const der = Uint8Array.fromHex("302a300506032b6570032100" + raw.toHex() + "00");
    const armoured = `-----BEGIN PUBLIC KEY-----\n${der.toBase64()}\n-----END PUBLIC KEY-----\n`;
    refuses(decodePublicKeyPem, armoured, /its DER is 45 bytes where an Ed25519 key has 44/);
    refuses(decodePublicKeyPem, publicPem + "trailing words\n", /not a PEM file/);
    refuses(decodePublicKeyPem, "comment\n" + publicPem, /not a PEM file/);
    refuses(decodePublicKeyPem, publicPem + publicPem, /not valid base64|not a PEM file/);
  });
});

Deno.test("encodePublicKeyPem() refuses a key of the wrong length", () => {
  assert.throws(() => encodePublicKeyPem(new Uint8Array(31)), RangeError);
});
