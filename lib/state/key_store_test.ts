import assert from "node:assert/strict";
import { join } from "node:path";
import { InputError, RefusedError } from "../errors.ts";
import { generateKeyPair, keyIdOf, readSigningKey } from "../policy/keys.ts";
import { openssl, withTempDir } from "../policy/keys_testing.ts";
import {
  addTrustedKey,
  keysDir,
  listTrustedKeys,
  loadTrustedKeys,
  removeTrustedKey,
  writeKeyPair,
} from "./key_store.ts";

function inputError(pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof InputError, `expected InputError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  };
}

const mode = (path: string) => Deno.statSync(path).mode! & 0o777;

Deno.test("writeKeyPair() writes the private key 0600 and the public key 0644, and never replaces them", async () => {
  await withTempDir((dir) => {
    const pair = generateKeyPair();
    const files = writeKeyPair(join(dir, "signer"), pair);
    assert.deepEqual(files, {
      privateKeyFile: join(dir, "signer.key"),
      publicKeyFile: join(dir, "signer.pub"),
    });
    assert.equal(mode(files.privateKeyFile), 0o600);
    assert.equal(mode(files.publicKeyFile), 0o644);
    assert.equal(Deno.readTextFileSync(files.privateKeyFile), pair.privateKeyPem);
    assert.throws(() => writeKeyPair(join(dir, "signer"), generateKeyPair()), inputError(/already exists/));
    assert.equal(Deno.readTextFileSync(files.privateKeyFile), pair.privateKeyPem);
  });
});

Deno.test("addTrustedKey() writes <keyid>.pub mode 0600 in a 0700 keys directory and is idempotent", async () => {
  await withTempDir((dir) => {
    const pair = generateKeyPair();
    const added = addTrustedKey(dir, pair.publicKeyPem, "signer.pub");
    assert.deepEqual(added, {
      keyid: pair.keyid,
      file: join(keysDir(dir), `${pair.keyid}.pub`),
      added: true,
    });
    assert.equal(mode(added.file), 0o600);
    assert.equal(mode(keysDir(dir)), 0o700);
    assert.equal(Deno.readTextFileSync(added.file), pair.publicKeyPem);
    assert.deepEqual(addTrustedKey(dir, pair.publicKeyPem, "again.pub"), { ...added, added: false });
    assert.deepEqual([...Deno.readDirSync(keysDir(dir))].map((e) => e.name), [`${pair.keyid}.pub`]);
  });
});

Deno.test("addTrustedKey() refuses an RSA key, a private key and junk, naming the source, and writes nothing", async () => {
  await withTempDir(async (dir) => {
    await openssl(dir, "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "rsa.key");
    const rsaPublic = await openssl(dir, "pkey", "-in", "rsa.key", "-pubout");
    assert.throws(
      () => addTrustedKey(dir, rsaPublic, "rsa.pub"),
      inputError(/^Not an Ed25519 key in rsa\.pub: it is an RSA key/),
    );
    assert.throws(
      () => addTrustedKey(dir, generateKeyPair().privateKeyPem, "signer.key"),
      inputError(/in signer\.key: it is a private key/),
    );
    assert.throws(
      () => addTrustedKey(dir, "junk\n", "junk.txt"),
      inputError(/in junk\.txt: it is not a PEM file/),
    );
    assert.deepEqual(listTrustedKeys(dir), []);
  });
});

Deno.test("addTrustedKey() accepts a public key made by openssl", async () => {
  await withTempDir(async (dir) => {
    await openssl(dir, "genpkey", "-algorithm", "ed25519", "-out", "ed.key");
    const publicPem = await openssl(dir, "pkey", "-in", "ed.key", "-pubout");
    const { keyid } = addTrustedKey(dir, publicPem, "ed.pub");
    assert.equal(keyid, readSigningKey(await Deno.readTextFile(join(dir, "ed.key")), "ed.key").keyid);
  });
});

Deno.test("removeTrustedKey() takes a keyid or a unique prefix of 8 hex digits", async () => {
  await withTempDir((dir) => {
    const one = generateKeyPair();
    const two = generateKeyPair();
    addTrustedKey(dir, one.publicKeyPem, "one");
    addTrustedKey(dir, two.publicKeyPem, "two");
    assert.equal(removeTrustedKey(dir, one.keyid.slice(0, 8).toUpperCase()), one.keyid);
    assert.equal(removeTrustedKey(dir, two.keyid), two.keyid);
    assert.deepEqual(listTrustedKeys(dir), []);
  });
});

Deno.test("removeTrustedKey() refuses an unknown key and a prefix too short to be safe", async () => {
  await withTempDir((dir) => {
    const pair = generateKeyPair();
    addTrustedKey(dir, pair.publicKeyPem, "one");
    assert.throws(
      () => removeTrustedKey(dir, "0".repeat(64)),
      inputError(/^No trusted key 0{64} in .*keys$/),
    );
    assert.throws(
      () => removeTrustedKey(dir, pair.keyid.slice(0, 7)),
      inputError(/at least 8 of its hex digits/),
    );
    assert.throws(() => removeTrustedKey(dir, "not-hex!"), inputError(/^Invalid keyid/));
    assert.equal(listTrustedKeys(dir).length, 1);
  });
});

Deno.test("removeTrustedKey() removes a key however its file is named", async () => {
  await withTempDir((dir) => {
    const pair = generateKeyPair();
    Deno.mkdirSync(keysDir(dir));
    Deno.writeTextFileSync(join(keysDir(dir), "ops-team.pem"), pair.publicKeyPem);
    assert.equal(removeTrustedKey(dir, pair.keyid), pair.keyid);
    assert.deepEqual([...Deno.readDirSync(keysDir(dir))], []);
  });
});

Deno.test("loadTrustedKeys() reads every key, and no store is no keys", async () => {
  await withTempDir((dir) => {
    assert.deepEqual(loadTrustedKeys(dir), []);
    const pairs = [generateKeyPair(), generateKeyPair()];
    for (const pair of pairs) addTrustedKey(dir, pair.publicKeyPem, "k");
    const keys = loadTrustedKeys(dir);
    assert.deepEqual(keys.map((key) => key.keyid).sort(), pairs.map((pair) => pair.keyid).sort());
    for (const key of keys) assert.equal(keyIdOf(key.publicKey), key.keyid);
  });
});

Deno.test("loadTrustedKeys() refuses a key file or keys directory others may write, naming it and the fix", async () => {
  await withTempDir((dir) => {
    const { file } = addTrustedKey(dir, generateKeyPair().publicKeyPem, "k");
    const refused = (path: string, fix: string) => (error: unknown) => {
      assert.ok(error instanceof RefusedError, `expected RefusedError, got ${error}`);
      assert.match(error.message, new RegExp(`^Refused .*: ${path} is world-writable`));
      assert.ok(error.message.endsWith(`fix it with: ${fix}`), error.message);
      return true;
    };
    Deno.chmodSync(file, 0o666);
    assert.throws(() => loadTrustedKeys(dir), refused(file, `chmod 0600 ${file}`));
    Deno.chmodSync(file, 0o644);
    assert.equal(loadTrustedKeys(dir).length, 1, "a public key others may read is still trusted");
    Deno.chmodSync(keysDir(dir), 0o777);
    assert.throws(() => loadTrustedKeys(dir), refused(keysDir(dir), `chmod 0700 ${keysDir(dir)}`));
    Deno.chmodSync(keysDir(dir), 0o700);
    Deno.chmodSync(dir, 0o777);
    assert.throws(() => loadTrustedKeys(dir), refused(dir, `chmod 0700 ${dir}`));
    Deno.chmodSync(dir, 0o700);
  });
});

Deno.test("loadTrustedKeys() refuses a store with a malformed file, naming it; listTrustedKeys() shows it", async () => {
  await withTempDir((dir) => {
    addTrustedKey(dir, generateKeyPair().publicKeyPem, "good");
    const broken = join(keysDir(dir), "broken.pub");
    Deno.writeTextFileSync(broken, "junk");
    assert.throws(() => loadTrustedKeys(dir), inputError(new RegExp(`^Not an Ed25519 key in ${broken}: `)));
    const listing = listTrustedKeys(dir);
    assert.equal(listing.length, 2);
    assert.match(listing.find((entry) => entry.file === broken)?.problem ?? "", /not a PEM file/);
  });
});

Deno.test("loadTrustedKeys() refuses a file that is not a *.pub key, and a key named for another keyid", async () => {
  await withTempDir((dir) => {
    Deno.mkdirSync(keysDir(dir));
    Deno.writeTextFileSync(join(keysDir(dir), "README"), "keys go here");
    assert.throws(() => loadTrustedKeys(dir), inputError(/^Unexpected file .*README in the trusted keys/));
    Deno.removeSync(join(keysDir(dir), "README"));
    const wrongName = join(keysDir(dir), `${"0".repeat(64)}.pub`);
    Deno.writeTextFileSync(wrongName, generateKeyPair().publicKeyPem);
    assert.throws(
      () => loadTrustedKeys(dir),
      inputError(/is named for another key: its keyid is [0-9a-f]{64}$/),
    );
  });
});

Deno.test("loadTrustedKeys() skips the hidden temporary file of an interrupted write", async () => {
  await withTempDir((dir) => {
    const pair = generateKeyPair();
    addTrustedKey(dir, pair.publicKeyPem, "k");
    Deno.writeTextFileSync(join(keysDir(dir), `.${pair.keyid}.pub.tmp-1-abc`), "-----BEGIN PUB");
    assert.deepEqual(loadTrustedKeys(dir).map((key) => key.keyid), [pair.keyid]);
  });
});
