import assert from "node:assert/strict";
import { layerPaths, overlayMount } from "./overlay.ts";

const MOUNTINFO = [
  "22 1 0:21 / / rw,relatime - ext4 /dev/vda1 rw",
  "90 22 0:55 / /srv/merged rw,relatime - overlay overlay " +
  "rw,lowerdir=/srv/lower1:/srv/low\\134:er2::/srv/data,upperdir=/srv/up\\040per,workdir=/srv/work",
  "91 22 0:56 / /mnt/ro rw - overlay overlay ro,lowerdir=/a:/b",
  "92 22 0:57 / /mnt/rel rw - overlay overlay rw,lowerdir=relative:/abs",
].join("\n");

Deno.test("overlayMount() lists an overlay's layers upper first, escapes undone, data-only layers kept", () => {
  assert.deepEqual(overlayMount(90, MOUNTINFO), {
    mountPoint: "/srv/merged",
    root: "/",
    layers: ["/srv/up per", "/srv/lower1", "/srv/low:er2", "/srv/data"],
  });
  assert.deepEqual(overlayMount(91, MOUNTINFO)?.layers, ["/a", "/b"], "no upper: read-only overlay");
  assert.deepEqual(overlayMount(92, MOUNTINFO)?.layers, ["/abs"], "a relative layer cannot be found");
  assert.equal(overlayMount(22, MOUNTINFO), undefined, "not an overlay");
  assert.equal(overlayMount(7, MOUNTINFO), undefined, "not listed");
});

Deno.test("layerPaths() maps a path under the overlay to the same path in each layer", () => {
  const overlay = { mountPoint: "/srv/merged", root: "/", layers: ["/up/", "/low"] };
  assert.deepEqual(layerPaths(overlay, "/srv/merged/etc/shadow"), ["/up/etc/shadow", "/low/etc/shadow"]);
  assert.deepEqual(layerPaths({ ...overlay, root: "/sub" }, "/srv/merged/x"), ["/up/sub/x", "/low/sub/x"]);
});
