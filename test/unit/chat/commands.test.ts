import { expect } from 'chai';
import { CommandParser, type Command } from '../../../src/chat/commands.js';
import type { Target } from '../../../src/xmpp/addresses.js';

const DOMAIN: Target = { kind: 'domain' };
const project = (p: string): Target => ({ kind: 'project', project: p });

describe('chat/commands', () => {
  const parser = new CommandParser('^[0-9]{1,12}$');
  const parse = (body: string, target: Target = DOMAIN): Command => parser.parse(body, target);

  describe('isProjectId', () => {
    it('follows the configured pattern', () => {
      expect(parser.isProjectId('1234')).to.equal(true);
      expect(parser.isProjectId('123456789012')).to.equal(true);
      expect(parser.isProjectId('1234567890123')).to.equal(false);
      expect(parser.isProjectId('')).to.equal(false);
      expect(parser.isProjectId('12a')).to.equal(false);
      expect(parser.isProjectId('../1')).to.equal(false);
    });

    it('never accepts more than 256 characters, even if the pattern would', () => {
      const loose = new CommandParser('^[a-z]+$');
      expect(loose.isProjectId('a'.repeat(256))).to.equal(true);
      expect(loose.isProjectId('a'.repeat(257))).to.equal(false);
    });

    it('refuses an invalid pattern at construction', () => {
      expect(() => new CommandParser('^[0-9')).to.throw(SyntaxError);
    });
  });

  describe('messages to a project JID', () => {
    it('any text asks for that project', () => {
      for (const body of ['report', 'hello', 'REPORT 9999', '1234', 'x', '../x', '1234; rm -rf /', 'ünïcödé 📄']) {
        expect(parse(body, project('1234')), body).to.deep.equal({ kind: 'report', project: '1234' });
      }
    });

    it('"help" and "?" still give help', () => {
      for (const body of ['help', '?', ' HELP ', '/help', '!help', 'hilfe', 'Aide']) {
        expect(parse(body, project('1234')), body).to.deep.equal({ kind: 'help' });
      }
    });

    it('a project JID that is not a valid id gives invalid-id with the JID local part', () => {
      expect(parse('report', project('abc'))).to.deep.equal({ kind: 'invalid-id', text: 'abc' });
      expect(parse('report', project('1234567890123'))).to.deep.equal({ kind: 'invalid-id', text: '1234567890123' });
      expect(parse('hello', project('..'))).to.deep.equal({ kind: 'invalid-id', text: '..' });
    });
  });

  describe('messages to the domain', () => {
    it('"1234" asks for project 1234', () => {
      expect(parse('1234')).to.deep.equal({ kind: 'report', project: '1234' });
      expect(parse('  1234 \n')).to.deep.equal({ kind: 'report', project: '1234' });
    });

    it('"report 1234" in any case, and its synonyms', () => {
      for (const body of [
        'report 1234',
        'REPORT 1234',
        'Report   1234  ',
        '/report 1234',
        '!status 1234',
        'get 1234',
        'report\n1234',
        'report\t1234',
      ]) {
        expect(parse(body), JSON.stringify(body)).to.deep.equal({ kind: 'report', project: '1234' });
      }
    });

    it('"help" and "?" give help', () => {
      for (const body of ['help', 'HELP', '?', ' ? ', '/help', '!?', 'hilfe', 'aide']) {
        expect(parse(body), body).to.deep.equal({ kind: 'help' });
      }
    });

    it('help with more words is not help', () => {
      expect(parse('help me').kind).to.equal('unknown');
      expect(parse('??').kind).to.equal('invalid-id');
    });

    it('"report" alone asks which project', () => {
      for (const body of ['report', 'REPORT', ' report ', '/report', 'status', 'get']) {
        expect(parse(body), body).to.deep.equal({ kind: 'missing-id' });
      }
    });

    it('a single word that is not an id is invalid-id', () => {
      expect(parse('../x')).to.deep.equal({ kind: 'invalid-id', text: '../x' });
      expect(parse('abc')).to.deep.equal({ kind: 'invalid-id', text: 'abc' });
      expect(parse('12a')).to.deep.equal({ kind: 'invalid-id', text: '12a' });
      expect(parse('-1')).to.deep.equal({ kind: 'invalid-id', text: '-1' });
      expect(parse('1234;')).to.deep.equal({ kind: 'invalid-id', text: '1234;' });
    });

    it('"report <bad id>" is invalid-id with just the id', () => {
      expect(parse('report ../x')).to.deep.equal({ kind: 'invalid-id', text: '../x' });
      expect(parse('report ../../etc/passwd')).to.deep.equal({ kind: 'invalid-id', text: '../../etc/passwd' });
      expect(parse('report 1234;rm')).to.deep.equal({ kind: 'invalid-id', text: '1234;rm' });
    });

    it('"1234; rm -rf" is not a report request', () => {
      const c = parse('1234; rm -rf');
      expect(c).to.deep.equal({ kind: 'unknown', text: '1234; rm -rf' });
    });

    it('several words are unknown, trimmed', () => {
      expect(parse('  hello there  ')).to.deep.equal({ kind: 'unknown', text: 'hello there' });
      expect(parse('report 1234 5678')).to.deep.equal({ kind: 'unknown', text: 'report 1234 5678' });
      expect(parse('1234 5678')).to.deep.equal({ kind: 'unknown', text: '1234 5678' });
    });

    it('empty-ish bodies are unknown with empty text (never a report)', () => {
      for (const body of ['', ' ', '\n\t ']) {
        expect(parse(body), JSON.stringify(body)).to.deep.equal({ kind: 'unknown', text: '' });
      }
    });

    it('long text is never taken as an id', () => {
      const long = '1'.repeat(5000);
      expect(parse(long)).to.deep.equal({ kind: 'invalid-id', text: long });
      expect(parse(`report ${long}`)).to.deep.equal({ kind: 'invalid-id', text: long });
      const words = 'word '.repeat(2000);
      expect(parse(words).kind).to.equal('unknown');
    });

    it('unicode digits and look-alikes are not ids', () => {
      expect(parse('１２３４')).to.deep.equal({ kind: 'invalid-id', text: '１２３４' }); // fullwidth
      expect(parse('١٢٣٤')).to.deep.equal({ kind: 'invalid-id', text: '١٢٣٤' }); // Arabic-Indic
      expect(parse('report 1234\u200b')).to.deep.equal({ kind: 'invalid-id', text: '1234\u200b' }); // zero-width space
      expect(parse('📄').kind).to.equal('invalid-id');
      expect(parse('Bericht für 1234').kind).to.equal('unknown');
    });

    it('"?" to a project JID is help, not a report', () => {
      expect(parse('?', project('1234'))).to.deep.equal({ kind: 'help' });
    });
  });

  describe('a custom id pattern', () => {
    const custom = new CommandParser('^[A-Z]{2}-[0-9]+$');
    it('is used for domain and project targets', () => {
      expect(custom.parse('AB-12', DOMAIN)).to.deep.equal({ kind: 'report', project: 'AB-12' });
      expect(custom.parse('report AB-12', DOMAIN)).to.deep.equal({ kind: 'report', project: 'AB-12' });
      expect(custom.parse('1234', DOMAIN)).to.deep.equal({ kind: 'invalid-id', text: '1234' });
      expect(custom.parse('x', project('ab-12'))).to.deep.equal({ kind: 'invalid-id', text: 'ab-12' });
    });
  });
});
