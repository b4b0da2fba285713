/** A struct of bpf/aegis.h as byte offsets: what ffi/ mirrors and the layout test checks against BTF. */

export type FieldLayout = { readonly offset: number; readonly size: number };
export type StructLayout = {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
};

export function struct<const F extends Record<string, FieldLayout>>(name: string, size: number, fields: F) {
  return { name, size, fields } as const satisfies StructLayout;
}
