/** Colour for text meant for a terminal: styles that colour, or a palette that leaves text as it is. */

export type Style = (text: string) => string;
export type Palette = { bold: Style; dim: Style; red: Style; yellow: Style; green: Style; cyan: Style };

const sgr = (open: number, close: number): Style => (text) => `\x1b[${open}m${text}\x1b[${close}m`;
const plain: Style = (text) => text;

/** Styles that colour when `color` is true and return the text unchanged otherwise. */
export function palette(color: boolean): Palette {
  if (!color) return { bold: plain, dim: plain, red: plain, yellow: plain, green: plain, cyan: plain };
  return {
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    red: sgr(31, 39),
    yellow: sgr(33, 39),
    green: sgr(32, 39),
    cyan: sgr(36, 39),
  };
}
