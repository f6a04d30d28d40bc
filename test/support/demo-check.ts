// The demo's self-check (scripts/demo.sh with XR_DEMO_SELFCHECK=1, run by CI):
// logs in as a demo user with @xmpp/client, waits until the component answers
// "help", asks for a sample report and waits for the component's closing line.
// Exits 0 when all that happened within the time limit, 1 otherwise.
//
//   node dist/test/support/demo-check.js --port 15222 --vhost example.com \
//     --component reports.example.com --user alice --password alice --project 1234 \
//     [--healthz http://127.0.0.1:15627/healthz]
import { xml } from '@xmpp/client';
import { XmppUser } from './xmpp-user.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

const say = (line: string) => process.stdout.write(`demo-check: ${line}\n`);

async function check(): Promise<void> {
  const port = Number(arg('port', '15222'));
  const vhost = arg('vhost', 'example.com');
  const component = arg('component', 'reports.example.com');
  const project = arg('project', '1234');
  const u = await XmppUser.login({
    port,
    domain: vhost,
    username: arg('user', 'alice'),
    password: arg('password', 'alice'),
    resource: 'demo-check',
  });
  try {
    say(`logged in as ${u.jid}`);
    // The component may still be connecting: ask until it answers.
    const until = Date.now() + 30000;
    for (;;) {
      await u.say(component, 'help');
      try {
        await u.waitForMessage(component, /I send project status reports/, 2000);
        break;
      } catch (err) {
        if (Date.now() > until)
          throw new Error(`no answer to "help" from ${component}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    say(`${component} answers "help"`);
    const contact = `${project}@${component}`;
    await u.say(contact, 'report');
    await u.waitForMessage(contact, new RegExp(`^Fetching the status report of project ${project}`), 15000);
    say(`${contact} is fetching its report`);
    // @xmpp/client takes no file transfer: the closing line says so (or, with links configured, gives one).
    const final = await u.waitFor(
      (e) =>
        e.name === 'message' &&
        (e.attrs.from ?? '').startsWith(contact) &&
        !/^(Fetching|Sending|Many reports) /.test(e.getChildText('body') ?? 'Fetching '),
      30000,
      `the closing line from ${contact}`,
    );
    say(`${contact} answered: ${final.getChildText('body')}`);
    const vcard = await u.iq(contact, 'get', xml('vCard', { xmlns: 'vcard-temp' }));
    say(`vCard of ${contact}: ${vcard.getChild('vCard', 'vcard-temp')?.getChildText('FN') ?? '(none)'}`);
    const healthz = arg('healthz', '');
    if (healthz) {
      const r = await fetch(healthz, { signal: AbortSignal.timeout(5000) });
      const text = (await r.text()).trim();
      if (r.status !== 200) throw new Error(`${healthz} answered ${r.status}: ${text}`);
      say(`${healthz}: ${text}`);
    }
  } finally {
    await u.logout();
  }
}

const deadline = setTimeout(() => {
  say('FAILED: no result within 90 s');
  process.exit(1);
}, 90000);
check().then(
  () => {
    clearTimeout(deadline);
    say('OK');
    process.exit(0);
  },
  (err: unknown) => {
    clearTimeout(deadline);
    say(`FAILED: ${(err as Error).message}`);
    process.exit(1);
  },
);
