// The admin commands (XEP-0050, see xmpp/adhoc.ts): list the report requests
// in progress, cancel one, show the counters, reload the configuration.
import type { ActiveRequestInfo } from './chat/active.js';
import { formatSize } from './chat/replies.js';
import type { Health } from './metrics.js';
import { dataForm, field, type AdhocCommand, type Step } from './xmpp/adhoc.js';

export const ADMIN_NODES = {
  list: 'list-transfers',
  cancel: 'cancel-transfer',
  counters: 'counters',
  reload: 'reload-config',
} as const;

export interface ReloadResult {
  /** Settings that changed and now apply. */
  applied: string[];
  /** Settings that changed but only apply after a restart. */
  needsRestart: string[];
}

export interface AdminDeps {
  requests: { list(): ActiveRequestInfo[]; cancel(id: string): ActiveRequestInfo | undefined };
  metrics: { summary(): Promise<string[]>; health(): Health };
  /** Re-reads the config (file and environment); rejects with a readable message when it is invalid. */
  reload: () => Promise<ReloadResult>;
  /** Which component instance answers (several may serve one domain). */
  instance: string;
  now?: () => number;
}

function describeRequest(r: ActiveRequestInfo, now: number): string {
  const what = r.file ? `${r.file.name} (${formatSize(r.file.size)})` : `project ${r.project}`;
  const secs = Math.max(0, Math.round((now - r.startedAt.getTime()) / 1000));
  return `#${r.id} ${r.jid}: ${r.stage} ${what}, for ${secs} s`;
}

export function adminCommands(d: AdminDeps): AdhocCommand[] {
  const now = d.now ?? Date.now;
  const instance = field({ var: 'instance', type: 'text-single', label: 'Instance', values: [d.instance] });
  const list: AdhocCommand = {
    node: ADMIN_NODES.list,
    name: 'List active transfers',
    execute(): Step {
      const active = d.requests.list();
      return {
        status: 'completed',
        form: dataForm('result', 'Active transfers', [
          instance,
          field({
            var: 'count',
            type: 'text-single',
            label: 'Report requests in progress',
            values: [String(active.length)],
          }),
          field({
            var: 'transfers',
            type: 'text-multi',
            label: 'Requests',
            values: active.map((r) => describeRequest(r, now())),
          }),
        ]),
      };
    },
  };
  const cancel: AdhocCommand = {
    node: ADMIN_NODES.cancel,
    name: 'Cancel a transfer',
    execute(): Step {
      const active = d.requests.list();
      if (active.length === 0)
        return { status: 'completed', notes: [{ type: 'info', text: `No transfers are running on ${d.instance}.` }] };
      return {
        status: 'executing',
        form: dataForm(
          'form',
          'Cancel a transfer',
          [
            field({
              var: 'id',
              type: 'list-single',
              label: 'Transfer',
              required: true,
              options: active.map((r) => ({ label: describeRequest(r, now()), value: r.id })),
            }),
          ],
          'The user is told that an administrator cancelled it.',
        ),
      };
    },
    submit(fields): Step {
      const id = (fields.get('id')?.[0] ?? '').replace(/^#/, '').trim();
      if (!id) return { status: 'completed', notes: [{ type: 'error', text: 'No transfer chosen.' }] };
      const r = d.requests.cancel(id);
      if (!r)
        return { status: 'completed', notes: [{ type: 'warn', text: `Transfer #${id} is not running (any more).` }] };
      return {
        status: 'completed',
        notes: [{ type: 'info', text: `Cancelled #${r.id}: project ${r.project} for ${r.jid}.` }],
      };
    },
  };
  const counters: AdhocCommand = {
    node: ADMIN_NODES.counters,
    name: 'Show counters',
    async execute(): Promise<Step> {
      const h = d.metrics.health();
      return {
        status: 'completed',
        form: dataForm('result', 'Counters', [
          instance,
          field({
            var: 'health',
            type: 'text-single',
            label: 'Health',
            values: [
              `${h.ok ? 'ok' : 'degraded'}: XMPP ${h.xmpp}, streamhost ${h.streamhost}, up ${h.uptimeSeconds} s`,
            ],
          }),
          field({
            var: 'counters',
            type: 'text-multi',
            label: 'Counters since start',
            values: await d.metrics.summary(),
          }),
        ]),
      };
    },
  };
  const reload: AdhocCommand = {
    node: ADMIN_NODES.reload,
    name: 'Reload the configuration',
    async execute(): Promise<Step> {
      let r: ReloadResult;
      try {
        r = await d.reload();
      } catch (err) {
        return {
          status: 'completed',
          notes: [
            { type: 'error', text: `Not reloaded; the running configuration is unchanged. ${(err as Error).message}` },
          ],
        };
      }
      const notes: Step['notes'] = [
        {
          type: 'info',
          text: r.applied.length
            ? `Reloaded on ${d.instance}; now in effect: ${r.applied.join(', ')}.`
            : `Reloaded on ${d.instance}; nothing that can change at run time changed.`,
        },
      ];
      if (r.needsRestart.length)
        notes.push({ type: 'warn', text: `Changed but only in effect after a restart: ${r.needsRestart.join(', ')}.` });
      return { status: 'completed', notes };
    },
  };
  return [list, cancel, counters, reload];
}
