import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { SETTINGS } from '../../src/config.js';

describe('README', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  it('documents every setting with its key and environment variable', () => {
    const missing = SETTINGS.filter((s) => !readme.includes(`| ${s.key} | ${s.env} |`)).map((s) => s.key);
    expect(missing, 'run node scripts/config-table.mjs and paste the table').to.deep.equal([]);
  });
  it('gives the two quick-start commands, and .ci/run runs the same test command', () => {
    expect(readme).to.include('npm run demo');
    expect(readme).to.include('npm test');
    expect(readFileSync(new URL('../../../.ci/run', import.meta.url), 'utf8')).to.match(/^npm test$/m);
  });
});
