// What SI and Jingle send their bytes with: one S5B sender, the built-in
// streamhost, the checked external proxies and one registry of in-band streams.
import type { Element } from '@xmpp/component';
import type { IbbStreams } from './ibb/streams.js';
import type { S5bSender } from './s5b/send.js';
import type { StreamhostMemory } from './s5b/memory.js';
import type { StreamhostInfo } from './s5b/stanzas.js';
import type { Streamhost } from './s5b/streamhost.js';

export interface StreamDeps {
  request: (iq: Element, timeoutMs: number) => Promise<Element>;
  streamhost: Streamhost | undefined;
  /** third-party XEP-0065 proxies, offered after our own streamhost */
  proxies: { readonly list: readonly StreamhostInfo[] };
  /** per user: which streamhost worked, offered first next time */
  memory: StreamhostMemory;
  s5b: S5bSender;
  ibb: IbbStreams;
}
