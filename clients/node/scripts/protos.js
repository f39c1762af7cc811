// `node scripts/protos.js copy` puts the repository's .proto files into proto/ before packing, so a
// packed package carries them; `clean` removes that copy after packing (the repository's own
// proto/ folder stays the one source).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.resolve(pkg, '..', '..', 'proto', 'tasktide');
const target = path.join(pkg, 'proto');

const command = process.argv[2];
if (command === 'copy') {
  if (!fs.existsSync(source)) throw new Error(`no .proto files at ${source}`);
  fs.rmSync(target, { recursive: true, force: true });
  const filter = (p) => !fs.statSync(p).isFile() || p.endsWith('.proto');
  fs.cpSync(source, path.join(target, 'tasktide'), { recursive: true, filter });
} else if (command === 'clean') {
  fs.rmSync(target, { recursive: true, force: true });
} else {
  console.error('usage: node scripts/protos.js copy|clean');
  process.exit(2);
}
