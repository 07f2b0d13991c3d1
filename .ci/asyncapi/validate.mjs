// Validates an AsyncAPI document with the official parser (@asyncapi/parser, the one the
// AsyncAPI CLI and Studio use): schema validation plus its Spectral ruleset. Prints every
// diagnostic; exits 1 if any is an error, or if the document cannot be parsed at all.
//
//   npm ci --prefix .ci/asyncapi && node .ci/asyncapi/validate.mjs docs/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs FILE');
  process.exit(2);
}
const source = resolve(path);
const { document, diagnostics } = await new Parser().parse(await readFile(source, 'utf8'), {
  source,
});
for (const d of diagnostics) {
  const where = d.path.length ? d.path.join('.') : '(root)';
  console.log(`${SEVERITY[d.severity] ?? d.severity}\t${d.code}\t${where}\t${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
if (errors || !document) {
  console.error(`${path}: INVALID AsyncAPI (${errors} error(s), see above)`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()} (${diagnostics.length} non-error diagnostic(s))`);
