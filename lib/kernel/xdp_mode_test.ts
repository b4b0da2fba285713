import assert from "node:assert/strict";
import { xdpAttachMode } from "./xdp_mode.ts";

Deno.test("xdpAttachMode() attaches generic on a veth, whose native XDP converts socket buffers", () => {
  assert.equal(xdpAttachMode("auto", "veth"), "generic");
});

Deno.test("xdpAttachMode() attaches native on a NIC driver, and where the interface names no driver", () => {
  assert.equal(xdpAttachMode("auto", "virtio_net"), "native");
  assert.equal(xdpAttachMode("auto", "mlx5_core"), "native");
  assert.equal(xdpAttachMode("auto", undefined), "native");
});

Deno.test("xdpAttachMode() keeps a mode that was asked for", () => {
  assert.equal(xdpAttachMode("native", "veth"), "native");
  assert.equal(xdpAttachMode("generic", "virtio_net"), "generic");
});
