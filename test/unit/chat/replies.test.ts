import { expect } from 'chai';
import { formatSize, replies } from '../../../src/chat/replies.js';

describe('chat/replies', () => {
  describe('formatSize', () => {
    const cases: Array<[number, string]> = [
      [0, '0 bytes'],
      [1, '1 byte'],
      [2, '2 bytes'],
      [999, '999 bytes'],
      [1023, '1023 bytes'],
      [1024, '1.0 KiB'],
      [1264, '1.2 KiB'],
      [102_348, '99.9 KiB'],
      [123_456, '121 KiB'],
      [1_258_291, '1.2 MiB'],
      [1_363_149, '1.3 MiB'],
      [100 * 1024 * 1024, '100 MiB'],
      [1024 ** 3, '1.0 GiB'],
      [4.7 * 1024 ** 3, '4.7 GiB'],
      [2 * 1024 ** 4, '2.0 TiB'],
      [5000 * 1024 ** 4, '5000 TiB'],
    ];
    for (const [bytes, text] of cases) {
      it(`${bytes} → ${text}`, () => {
        expect(formatSize(bytes)).to.equal(text);
      });
    }

    // The unit is chosen after rounding: just under a boundary reads "1.0 MiB", not "1024 KiB",
    // and 99.95..99.99 KiB read "100 KiB" like every other value >= 100 (no decimal).
    it('rounds across unit boundaries', () => {
      expect(formatSize(1024 * 1024 - 1)).to.equal('1.0 MiB');
      expect(formatSize(1024 ** 3 - 1)).to.equal('1.0 GiB');
      expect(formatSize(102_399)).to.equal('100 KiB');
    });
  });

  describe('invalidId', () => {
    it('quotes short text as is, with the example', () => {
      expect(replies.invalidId('abc', '1234')).to.equal("'abc' is not a project id; project ids look like 1234.");
    });

    it('shortens long text to 40 characters ending in …', () => {
      const long = 'x'.repeat(500);
      const msg = replies.invalidId(long, '1234');
      const quoted = /^'(.*)' is not a project id/.exec(msg)![1];
      expect(quoted).to.have.length(40);
      expect(quoted).to.equal('x'.repeat(39) + '…');
      expect(msg).not.to.include('x'.repeat(40));
    });

    it('keeps text of exactly 40 characters whole', () => {
      const t = 'y'.repeat(40);
      expect(replies.invalidId(t, '1')).to.include(`'${t}'`);
      expect(replies.invalidId(t + 'z', '1')).to.include(`'${'y'.repeat(39)}…'`);
    });

    it('flattens newlines and runs of white space into one line', () => {
      const msg = replies.invalidId('  a\nb\r\n\tc   d  ', '1234');
      expect(msg).to.equal("'a b c d' is not a project id; project ids look like 1234.");
      expect(msg).not.to.match(/[\r\n\t]/);
    });

    it('flattens before shortening', () => {
      const msg = replies.invalidId('\n'.repeat(100) + 'abc' + '\n'.repeat(100), '1');
      expect(msg).to.include("'abc'");
    });

    // Regression guard (was a bug): quote() cuts at 39 UTF-16 code units, so
    // an astral character (emoji) straddling the cut leaves a lone surrogate
    // in the reply, which is not valid text (it goes out as U+FFFD).
    it('never cuts a character in half', () => {
      const msg = replies.invalidId('a'.repeat(38) + '📄📄📄', '1');
      expect(msg).not.to.match(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    });

    it('unknown() quotes the same way', () => {
      expect(replies.unknown('hello\nthere', '1234')).to.equal(
        'I did not understand \'hello there\'. Send a project id such as 1234, or "help".',
      );
      expect(replies.unknown('z'.repeat(100), '1234')).to.include(`'${'z'.repeat(39)}…'`);
    });
  });

  describe('delivered', () => {
    it('says "by direct connection" for s5b', () => {
      expect(replies.delivered('status-1234.pdf', 1_200_000, 's5b')).to.equal(
        'Delivered status-1234.pdf (1.1 MiB) by direct connection.',
      );
    });
    it('says "in-band" for ibb', () => {
      expect(replies.delivered('status-1234.pdf', 1, 'ibb')).to.equal('Delivered status-1234.pdf (1 byte) in-band.');
    });
  });

  describe('other replies', () => {
    it('help names the domain and the example both ways', () => {
      const h = replies.help('reports.example.com', '1234');
      expect(h).to.include('1234@reports.example.com');
      expect(h).to.include('"1234"').and.include('"report 1234"');
      expect(h).to.include('"help"');
    });

    it('size-bearing replies use formatSize', () => {
      expect(replies.tooLarge('1234', 100 * 1024 * 1024))
        .to.include('limit of 100 MiB')
        .and.include('project 1234');
      expect(replies.ready('r.pdf', 2048)).to.equal('The report r.pdf (2.0 KiB) is ready.');
      expect(replies.sending('r.pdf', 0)).to.include('(0 bytes)');
      expect(replies.lost('r.pdf', 1024, 2 * 1024 * 1024)).to.include('after 1.0 KiB of 2.0 MiB');
    });

    it('names the project in every error about it', () => {
      for (const f of [
        replies.notFound,
        replies.forbidden,
        replies.unavailable,
        replies.empty,
        replies.internal,
        replies.fetching,
        replies.status,
      ]) {
        expect(f('98765')).to.include('98765');
      }
      expect(replies.missingId('1234')).to.include('report 1234');
      expect(replies.notAllowed('example.com')).to.include('example.com');
    });
  });
});
