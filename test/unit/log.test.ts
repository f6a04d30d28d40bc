import { expect } from 'chai';
import { Writable } from 'node:stream';
import { createLogger, prettyLine } from '../../src/log.js';

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  const w = Object.assign(
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c.toString());
        cb();
      },
    }),
    { isTTY },
  );
  return { w, text: () => chunks.join('') };
}

describe('log', () => {
  it('writes JSON lines by default, and under auto when the output is no terminal (systemd, CI)', () => {
    for (const format of ['json', 'auto'] as const) {
      const s = sink(false);
      createLogger('info', s.w, format).info({ jid: 'a@b/c', bytes: 3 }, 'delivered');
      const line = JSON.parse(s.text().trim()) as Record<string, unknown>;
      expect(line).to.include({ msg: 'delivered', jid: 'a@b/c', bytes: 3, level: 30, service: 'xmpp-reports' });
    }
  });

  it('writes plain text for people on a terminal (auto) or when asked (pretty), secrets still hidden', () => {
    const s = sink(true);
    createLogger('info', s.w, 'auto').warn({ jid: 'a@b/c', secret: 's3cr3t', why: 'two words' }, 'transfer failed');
    const text = s.text();
    expect(text).to.match(
      // eslint-disable-next-line no-control-regex -- the terminal colour codes are what is checked
      /^\d\d:\d\d:\d\d\.\d{3} \x1b\[33mWARN \x1b\[0m transfer failed {2}jid=a@b\/c secret=\(hidden\) why="two words"\n$/,
    );
    expect(text).to.not.include('s3cr3t');
    const p = sink(false);
    createLogger('info', p.w, 'pretty').info('starting');
    expect(p.text()).to.match(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}starting\n$/);
  });

  it('passes a line that is not JSON through unchanged', () => {
    expect(prettyLine('not json', false)).to.equal('not json');
  });
});
