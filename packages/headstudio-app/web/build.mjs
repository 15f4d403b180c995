// Builds the viewer bundle into the headstudio package: `npm ci && node build.mjs` (nox -s web).
//
// Writes ../src/headstudio/output/viewer/static/{viewer.js, index.html, THIRD_PARTY_LICENSES.txt}. The
// first line of viewer.js records the sha256 of the sources (sourceFiles() below, hashed as
// headstudio.output.viewer.bundle.sources_hash does), so a test notices a bundle built from other sources.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "headstudio", "output", "viewer", "static");

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** The files whose content the bundle depends on, as sorted POSIX paths relative to web/. */
export function sourceFiles() {
  const fixed = ["build.mjs", "index.html", "package.json", "package-lock.json"];
  const src = walk(join(here, "src")).map((p) => relative(here, p).split("\\").join("/"));
  return [...fixed, ...src].sort();
}

export function sourcesHash() {
  const h = createHash("sha256");
  for (const rel of sourceFiles()) {
    h.update(rel + "\0");
    h.update(readFileSync(join(here, rel)));
    h.update("\0");
  }
  return h.digest("hex");
}

const pkg = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8"));
const deps = ["three", "@sparkjsdev/spark", "lil-gui"];

const result = await build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  minify: true,
  format: "iife", // a classic script: module scripts do not load from file://
  target: "es2020",
  legalComments: "none",
  write: false,
  logLevel: "warning",
});
const banner =
  `/*! headstudio viewer | sources sha256:${sourcesHash()} | ` +
  deps.map((d) => `${d} ${pkg(d).version}`).join(", ") +
  " (MIT, see THIRD_PARTY_LICENSES.txt) */\n";
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "viewer.js"), banner + result.outputFiles[0].text);
writeFileSync(join(out, "index.html"), readFileSync(join(here, "index.html")));
const licenses = deps.map((d) => {
  const dir = join(here, "node_modules", d);
  const file = readdirSync(dir).find((n) => /^licen[cs]e/i.test(n));
  const text = readFileSync(join(dir, file), "utf8");
  return `${d} ${pkg(d).version}\n${"=".repeat(60)}\n${text.trim()}\n`;
});
writeFileSync(join(out, "THIRD_PARTY_LICENSES.txt"), licenses.join("\n"));
console.log(`viewer.js: ${(banner.length + result.outputFiles[0].text.length) / 1024 | 0} KiB -> ${out}`);
