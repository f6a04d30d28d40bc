// Prints the README's configuration table from the one schema in src/config.ts
// (run after `npm run build`): node scripts/config-table.mjs
import { SETTINGS } from '../dist/src/config.js';

const fmt = (v) => (v === undefined ? '(required)' : Array.isArray(v) ? v.join(',') : String(v));
console.log('| key | environment | default | meaning |');
console.log('|---|---|---|---|');
for (const s of SETTINGS) {
  const def = s.secret && s.def === '' ? '' : fmt(s.def);
  console.log(`| ${s.key} | ${s.env} | ${def === '' ? '' : '`' + def + '`'} | ${s.doc.replace(/\|/g, '\\|')} |`);
}
