// Usage: node validate.mjs FILE.glb  -> prints the Khronos glTF-Validator report as JSON.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");
const file = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
  uri: file,
  maxIssues: 0,
  externalResourceFunction: () => Promise.reject(new Error("external resources are not allowed")),
});
process.stdout.write(JSON.stringify(report));
