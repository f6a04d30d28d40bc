// Which of our addresses a stanza was sent to: the component domain itself,
// or a project JID (<project>@<domain>).
import jid from '@xmpp/jid';

export type Target = { kind: 'domain' } | { kind: 'project'; project: string };

export interface Jid {
  local: string;
  domain: string;
  resource: string;
  bare: string;
  full: string;
}

export function parseJid(s: string | undefined): Jid | undefined {
  if (!s) return undefined;
  try {
    const j = jid(s);
    const local = j.local.toLowerCase();
    const domain = j.domain.toLowerCase();
    const bare = local ? `${local}@${domain}` : domain;
    return { local, domain, resource: j.resource, bare, full: j.resource ? `${bare}/${j.resource}` : bare };
  } catch {
    return undefined;
  }
}

export class Addresses {
  constructor(
    readonly domain: string,
    readonly resource: string,
  ) {}

  target(to: string | undefined): Target | undefined {
    const j = parseJid(to);
    if (!j || j.domain !== this.domain) return undefined;
    return j.local ? { kind: 'project', project: j.local } : { kind: 'domain' };
  }

  /** The bare JID of a project. */
  projectBare(project: string): string {
    return `${project.toLowerCase()}@${this.domain}`;
  }

  /** The full JID a project uses for presence and every stanza of a transfer (libpurple needs a resource). */
  projectFull(project: string): string {
    return `${this.projectBare(project)}/${this.resource}`;
  }
}
