/** Loads the YAML parser with the importing module: for code that parses YAML synchronously at once. */
import * as module from "yaml";
import { provideYaml } from "./yaml.ts";

provideYaml(module);
