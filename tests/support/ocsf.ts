/**
 * Checks an OCSF object against docs/schema/ocsf-classes.json: the base event's and its class's required
 * attributes, its class's activities, type_uid, and the enums of the decision. Returns what is wrong.
 */

type Table = {
  base: { required: string[] };
  classes: Record<string, {
    name: string;
    category_uid: number;
    required: string[];
    atLeastOne?: string[][];
    activities: Record<string, string>;
  }>;
  severity_id: Record<string, string>;
  action_id: Record<string, string>;
  disposition_id: Record<string, string>;
  status_id: Record<string, string>;
};

export const OCSF_CLASSES: Table = JSON.parse(
  Deno.readTextFileSync(new URL("../../docs/schema/ocsf-classes.json", import.meta.url)),
);

function at(value: unknown, path: string): unknown {
  for (const key of path.split(".")) value = (value as Record<string, unknown> | undefined)?.[key];
  return value;
}

const present = (value: unknown) => value !== undefined && value !== null && value !== "";

/** Every problem of `ocsf` under the table, as "ATTRIBUTE: what"; empty when it conforms. */
export function ocsfProblems(ocsf: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const ocsfClass = OCSF_CLASSES.classes[String(ocsf.class_uid)];
  if (ocsfClass === undefined) return [`class_uid: ${ocsf.class_uid} is not a class of the table`];
  for (const name of [...OCSF_CLASSES.base.required, ...ocsfClass.required]) {
    if (!present(at(ocsf, name))) problems.push(`${name}: required by ${ocsfClass.name}, missing`);
  }
  for (const names of ocsfClass.atLeastOne ?? []) {
    if (!names.some((name) => present(at(ocsf, name)))) problems.push(`${names.join("|")}: none present`);
  }
  if (ocsf.category_uid !== ocsfClass.category_uid) problems.push(`category_uid: ${ocsf.category_uid}`);
  if (ocsfClass.activities[String(ocsf.activity_id)] === undefined) {
    problems.push(`activity_id: ${ocsf.activity_id} is not an activity of ${ocsfClass.name}`);
  }
  if (ocsf.type_uid !== (ocsf.class_uid as number) * 100 + (ocsf.activity_id as number)) {
    problems.push(`type_uid: ${ocsf.type_uid}`);
  }
  for (const name of ["severity_id", "action_id", "disposition_id", "status_id"] as const) {
    if (ocsf[name] !== undefined && OCSF_CLASSES[name][String(ocsf[name])] === undefined) {
      problems.push(`${name}: ${ocsf[name]} is not in the enum`);
    }
  }
  if (typeof ocsf.time !== "number" || !(ocsf.time > 0)) problems.push(`time: ${ocsf.time}`);
  if (!Array.isArray(ocsf.observables)) problems.push("observables: not an array");
  return problems;
}
