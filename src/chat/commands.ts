// What the user asked, from the message body and the JID it was sent to. Pure.
import type { Target } from '../xmpp/addresses.js';

export type Command =
  | { kind: 'help' }
  | { kind: 'report'; project: string }
  | { kind: 'invalid-id'; text: string }
  | { kind: 'missing-id' }
  | { kind: 'unknown'; text: string };

const HELP = /^\s*[/!]?(help|\?|hilfe|aide)\s*$/i;
const REPORT_WITH_ID = /^\s*[/!]?(?:report|status|get)\s+(\S+)\s*$/i;
const REPORT_ALONE = /^\s*[/!]?(?:report|status|get)\s*$/i;

export class CommandParser {
  private readonly idPattern: RegExp;
  constructor(idPattern: string) {
    this.idPattern = new RegExp(idPattern);
  }

  /** The pattern decides, but ids that could change a URL or path, or a JID, are never project ids. */
  isProjectId(id: string): boolean {
    if (id.length === 0 || id.length > 256 || id === '.' || id === '..') return false;
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\s/\\@:<>&'"\u0000-\u001f\u007f]/.test(id)) return false;
    if (/\p{Cs}/u.test(id)) return false; // a lone surrogate is not text (and breaks URL encoding)
    return this.idPattern.test(id);
  }

  parse(body: string, target: Target): Command {
    if (HELP.test(body)) return { kind: 'help' };
    if (target.kind === 'project') {
      // Any text to a project JID asks for that project's report.
      return this.isProjectId(target.project)
        ? { kind: 'report', project: target.project }
        : { kind: 'invalid-id', text: target.project };
    }
    const withId = REPORT_WITH_ID.exec(body);
    const candidate = withId ? withId[1] : body.trim();
    if (REPORT_ALONE.test(body)) return { kind: 'missing-id' };
    if (withId || /^\S+$/.test(candidate)) {
      return this.isProjectId(candidate)
        ? { kind: 'report', project: candidate }
        : { kind: 'invalid-id', text: candidate };
    }
    return { kind: 'unknown', text: body.trim() };
  }
}
