// Builds the back office into dist/ (run by `make web`): index.html, app.js (one esbuild bundle of
// src/main.ts and the generated Connect-ES code under ../generated/ts) and app.css.
// index.html names app.js and app.css with a content hash in the query string, so Envoy can serve
// them at fixed paths with a long cache lifetime while index.html itself is always revalidated.
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");

const bundle = await esbuild.build({
  entryPoints: [path.join(here, "src", "main.ts")],
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  write: false,
  // The generated code lives outside web/ (generated/ts): let it find web/node_modules too.
  nodePaths: [path.join(here, "node_modules")],
  outfile: path.join(dist, "app.js"),
  logLevel: "warning",
});
const script = bundle.outputFiles[0].contents;
const styles = await readFile(path.join(here, "src", "styles.css"));
const digest = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 16);
const page = (await readFile(path.join(here, "src", "index.html"), "utf8"))
  .replace("{{APP_JS}}", `/app.js?v=${digest(script)}`)
  .replace("{{APP_CSS}}", `/app.css?v=${digest(styles)}`);

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await writeFile(path.join(dist, "app.js"), script);
await writeFile(path.join(dist, "app.css"), styles);
await writeFile(path.join(dist, "index.html"), page);
console.log(`web/dist: app.js ${script.length} bytes, app.css ${styles.length} bytes`);
