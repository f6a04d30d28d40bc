// XEP-0050 ad-hoc commands on the component domain, for the JIDs allowed to
// run them: discovery (disco#items on the commands node, disco#info on each
// command node), execution with one or two stages (a form to fill, then
// complete), sessions and cancel. Others see an empty command list and get
// <forbidden/> when they try to execute. The commands themselves are given.
import { xml, type Element } from '@xmpp/component';
import type { Jid, Target } from './addresses.js';
import { errorElement } from './errors.js';
import { NS } from './namespaces.js';
import { newSid } from './ids.js';

export type Fields = ReadonlyMap<string, string[]>;

export interface Note {
  type: 'info' | 'warn' | 'error';
  text: string;
}

/** What one stage of a command answers: a form to fill (executing), or a result (completed). */
export interface Step {
  status: 'executing' | 'completed';
  form?: Element; // a jabber:x:data form (type form when executing, result when completed)
  notes?: Note[];
}

export interface AdhocCommand {
  node: string;
  name: string;
  /** First stage. */
  execute(from: Jid): Promise<Step> | Step;
  /** Second stage, with the submitted form's fields (commands whose first stage is a form). */
  submit?(fields: Fields, from: Jid): Promise<Step> | Step;
}

interface Session {
  node: string;
  jid: string;
  expires: number;
}

const SESSION_TTL_MS = 10 * 60 * 1000;
const MAX_SESSIONS = 1000;

function commandsError(type: 'modify' | 'cancel', condition: string, specific: string): Element {
  const e = errorElement(type, condition);
  e.append(xml(specific, { xmlns: NS.COMMANDS }));
  return e;
}

/** Reads the fields of a submitted jabber:x:data form. */
function formFields(x: Element | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of x?.getChildren('field') ?? []) {
    if (f.attrs.var)
      out.set(
        f.attrs.var,
        f.getChildren('value').map((v) => v.text()),
      );
  }
  return out;
}

/** A jabber:x:data field. */
export function field(o: {
  var: string;
  type: string;
  label?: string;
  values?: readonly string[];
  options?: ReadonlyArray<{ label: string; value: string }>;
  required?: boolean;
}): Element {
  return xml(
    'field',
    { var: o.var, type: o.type, label: o.label },
    o.required ? xml('required') : undefined,
    ...(o.options ?? []).map((op) => xml('option', { label: op.label }, xml('value', {}, op.value))),
    ...(o.values ?? []).map((v) => xml('value', {}, v)),
  );
}

export function dataForm(type: 'form' | 'result', title: string, fields: Element[], instructions?: string): Element {
  return xml(
    'x',
    { xmlns: NS.DATA_FORMS, type },
    xml('title', {}, title),
    instructions ? xml('instructions', {}, instructions) : undefined,
    ...fields,
  );
}

export class AdhocCommands {
  private readonly byNode = new Map<string, AdhocCommand>();
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly domain: string,
    commands: readonly AdhocCommand[],
    private readonly isAllowed: (bareJid: string) => boolean,
    private readonly now: () => number = Date.now,
  ) {
    for (const c of commands) this.byNode.set(c.node, c);
  }

  /** disco#items on the domain's commands node: the commands, for those allowed; nothing for others. Undefined: not ours. */
  discoItems(query: Element, from: Jid, target: Target): Element | undefined {
    if (query.attrs.node !== NS.COMMANDS) return undefined;
    const visible = target.kind === 'domain' && this.isAllowed(from.bare);
    return xml(
      'query',
      { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS },
      ...(visible
        ? [...this.byNode.values()].map((c) => xml('item', { jid: this.domain, node: c.node, name: c.name }))
        : []),
    );
  }

  /** disco#info on a command node (XEP-0050 §2.2). Undefined: not ours. */
  discoInfo(query: Element, from: Jid, target: Target): Element | undefined {
    const node = query.attrs.node;
    if (!node) return undefined;
    if (node === NS.COMMANDS) {
      return xml(
        'query',
        { xmlns: NS.DISCO_INFO, node },
        xml('identity', { category: 'automation', type: 'command-list', name: 'Commands' }),
      );
    }
    const cmd = this.byNode.get(node);
    if (!cmd || target.kind !== 'domain' || !this.isAllowed(from.bare)) return errorElement('cancel', 'item-not-found');
    return xml(
      'query',
      { xmlns: NS.DISCO_INFO, node },
      xml('identity', { category: 'automation', type: 'command-node', name: cmd.name }),
      xml('feature', { var: NS.COMMANDS }),
      xml('feature', { var: NS.DATA_FORMS }),
    );
  }

  /** <iq type='set'><command/></iq>: the payload of the result, or an error. */
  async execute(command: Element, from: Jid, target: Target): Promise<Element> {
    const node = command.attrs.node ?? '';
    const cmd = target.kind === 'domain' ? this.byNode.get(node) : undefined;
    if (!cmd) return errorElement('cancel', 'item-not-found');
    if (!this.isAllowed(from.bare)) return errorElement('auth', 'forbidden');
    this.expire();
    const action = command.attrs.action ?? 'execute';
    const sid = command.attrs.sessionid;
    const submitted = command.getChild('x', NS.DATA_FORMS);
    if (sid !== undefined) {
      const s = this.sessions.get(sid);
      if (!s || s.node !== node || s.jid !== from.full) return commandsError('modify', 'bad-request', 'bad-sessionid');
      this.sessions.delete(sid);
      if (action === 'cancel') return this.reply(node, sid, { status: 'completed' }, 'canceled');
      if (action !== 'execute' && action !== 'complete' && action !== 'next')
        return commandsError('modify', 'bad-request', 'bad-action');
      if (!cmd.submit) return commandsError('modify', 'bad-request', 'bad-action');
      return this.reply(node, sid, await cmd.submit(formFields(submitted), from));
    }
    if (action === 'cancel') return this.reply(node, newSid('cmd-', 8), { status: 'completed' }, 'canceled');
    if (action !== 'execute') return commandsError('modify', 'bad-request', 'malformed-action');
    // A client that already sends the filled-in form gets the answer in one go.
    const step =
      submitted?.attrs.type === 'submit' && cmd.submit
        ? await cmd.submit(formFields(submitted), from)
        : await cmd.execute(from);
    const id = newSid('cmd-', 8);
    if (step.status === 'executing') {
      if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
      this.sessions.set(id, { node, jid: from.full, expires: this.now() + SESSION_TTL_MS });
    }
    return this.reply(node, id, step);
  }

  private reply(node: string, sessionid: string, step: Step, status: 'canceled' | undefined = undefined): Element {
    return xml(
      'command',
      { xmlns: NS.COMMANDS, node, sessionid, status: status ?? step.status },
      step.status === 'executing' && !status ? xml('actions', { execute: 'complete' }, xml('complete')) : undefined,
      ...(status ? [] : (step.notes ?? []).map((n) => xml('note', { type: n.type }, n.text))),
      status ? undefined : step.form,
    );
  }

  private expire(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (s.expires <= now) this.sessions.delete(id);
  }
}
