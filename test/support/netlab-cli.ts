// The network lab from the command line (scripts/netlab.sh): `up PREFIX`
// builds it and leaves it up, `down PREFIX` removes it, `show` prints the hosts.
import { CORP_PUBLIC_V4, HOME_PUBLIC_V4, LAB_ADDRESSES, Netlab } from './netlab.js';

async function main(): Promise<void> {
  const [cmd, prefix] = process.argv.slice(2);
  if ((cmd !== 'up' && cmd !== 'down') || !prefix) {
    process.stderr.write('usage: netlab-cli.js up|down PREFIX\n');
    process.exit(2);
  }
  if (cmd === 'up') {
    const lab = await Netlab.up({ prefix, keep: true });
    for (const [h, a] of Object.entries(LAB_ADDRESSES))
      process.stdout.write(
        `${lab.ns(h as keyof typeof LAB_ADDRESSES).padEnd(20)} ${[a.v4, a.v6].filter(Boolean).join('  ')}\n`,
      );
    process.stdout.write(
      `company router ${lab.ns('corp')} (public ${CORP_PUBLIC_V4}), home router ${lab.ns('homegw')} (public ${HOME_PUBLIC_V4})\n`,
    );
  } else {
    const existing = await Netlab.namespaces();
    if (!existing.some((n) => n.startsWith(`${prefix}-`))) process.stderr.write(`no lab with prefix ${prefix}\n`);
    Netlab.removeSync(prefix);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`netlab: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
