/**
 * Overlay mounts: a file seen through an overlay is one inode of the overlay and, behind it, a real inode
 * in the upper or a lower directory. BPF-LSM sees both (the overlay opens the real file for it), and so can
 * a process that reads the layer directory itself. A rule named through an overlay therefore keys every
 * layer's copy too (see resolve.ts), and one named through a layer is also hit through the overlay.
 */

/** An overlay mount from /proc/self/mountinfo: where it is mounted and its layers, upper first. */
export type OverlayMount = { mountPoint: string; root: string; layers: string[] };

/** The overlay mount with id `mountId`, or undefined when that mount is not an overlay (or not listed). */
export function overlayMount(mountId: number, mountinfo: string): OverlayMount | undefined {
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    if (Number(fields[0]) !== mountId) continue;
    const separator = fields.indexOf("-");
    if (separator < 0 || fields[separator + 1] !== "overlay") return undefined;
    // mountinfo writes a ',' inside a value as \054, so the options split on ','.
    const options = (fields[separator + 3] ?? "").split(",");
    const option = (name: string) => {
      const raw = options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
      return raw === undefined ? undefined : unescapeMountinfo(raw);
    };
    const upper = option("upperdir");
    // Lower layers are separated by ':' ('::' before data-only layers, 6.5+); a ':' in a name is '\:'.
    const lowers = splitUnescaped(option("lowerdir") ?? "", ":").filter((layer) => layer !== "");
    const layers = [...upper === undefined ? [] : [upper], ...lowers].map((layer) =>
      layer.replace(/\\(.)/g, "$1")
    )
      // A relative layer was named from the mounter's working directory, which is not known here.
      .filter((layer) => layer.startsWith("/"));
    return {
      mountPoint: unescapeMountinfo(fields[4] ?? ""),
      root: unescapeMountinfo(fields[3] ?? ""),
      layers,
    };
  }
  return undefined;
}

/**
 * The paths in each layer that stand for `realPath` (a path under the overlay's mount point, symlinks
 * resolved), upper first; only the layers where it exists are kept by the caller.
 */
export function layerPaths(overlay: OverlayMount, realPath: string): string[] {
  const relative = realPath === overlay.mountPoint ? "" : realPath.slice(overlay.mountPoint.length);
  const root = overlay.root === "/" ? "" : overlay.root;
  return overlay.layers.map((layer) => `${layer.replace(/\/+$/, "")}${root}${relative}`);
}

function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === "\\" && i + 1 < text.length) {
      current += char + text[i + 1];
      i++;
    } else if (char === separator) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
