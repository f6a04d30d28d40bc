// The component survives an ejabberd restart: it reconnects by itself with
// backoff, logs the disconnect once, and answers again.
import { expect } from 'chai';
import { XmppUser } from '../support/xmpp-user.js';
import { getEjabberd, sleep, startComponent, user } from './harness.js';

describe('integration: reconnect after an ejabberd restart', function () {
  this.timeout(180000);

  it('reconnects by itself and answers again', async () => {
    const ej = await getEjabberd();
    const comp = await startComponent();
    try {
      expect(comp.logged('connected to the XMPP server')).to.have.length(1);
      await ej.restart();
      const deadline = Date.now() + 60000;
      while (comp.logged('connected to the XMPP server').length < 2 && Date.now() < deadline) await sleep(200);
      expect(comp.logged('connected to the XMPP server')).to.have.length(2);
      expect(comp.logged(/^disconnected from the XMPP server; reconnecting/)).to.have.length(1);
      const a = await user('alice');
      const u = await XmppUser.login({
        port: ej.c2sPort,
        domain: ej.domain,
        username: a.username,
        password: a.password,
        resource: 'after-restart',
      });
      try {
        await u.say(ej.componentDomain, 'help');
        await u.waitForMessage(ej.componentDomain, /I send project status reports/, 15000);
      } finally {
        await u.logout();
      }
    } finally {
      await comp.stop();
    }
  });
});
