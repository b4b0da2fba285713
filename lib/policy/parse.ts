/**
 * Policy text to a validated `Policy` (lib/policy/parse_text.ts), with the YAML parser loaded up front so
 * that every function here works synchronously on YAML and JSON alike. `policy apply`, the API and the
 * agent's apply path import parse_text.ts instead and load YAML only for a policy that needs it
 * (lib/policy/yaml.ts).
 */
import "./yaml_eager.ts";

export * from "./parse_text.ts";
