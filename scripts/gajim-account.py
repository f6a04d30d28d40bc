#!/usr/bin/python3
"""Writes a Gajim 1.7 account with Gajim's own settings code (before Gajim's first start).

Usage: /usr/bin/python3 scripts/gajim-account.py JID PASSWORD HOST PORT RESOURCE
Runs as the Gajim user, with HOME/XDG_* set as Gajim will see them.
"""
import sys

from gajim.common import app, configpaths
from gajim.common.settings import Settings

jid, password, host, port, resource = sys.argv[1:6]
configpaths.init()
configpaths.create_paths()
app.settings = Settings()
app.settings.init()
account = 'test'
username, domain = jid.split('@', 1)
if account not in app.settings.get_accounts():
    app.settings.add_account(account)
values = {
    'name': username,
    'hostname': domain,
    'password': password,
    'savepass': True,
    'resource': resource,
    'active': True,
    'autoconnect': True,
    'use_custom_host': True,
    'custom_host': host,
    'custom_port': int(port),
    'custom_type': 'PLAIN',
    'confirm_unencrypted_connection': False,
    'account_label': 'test',
}
# No keyring under a bare dbus-run-session: the password stays in the settings.
app.settings.set('use_keyring', False)
for key, value in values.items():
    app.settings.set_account_setting(account, key, value)
app.settings.save()
print(configpaths.get('SETTINGS'))
