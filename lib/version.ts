/** The product version, also in deno.json. */
export const VERSION = "0.1.0";
