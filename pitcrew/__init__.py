"""The `pitcrew` command and what needs every app at once: launcher, topology, demo loader, migrations runner.

It imports the apps; nothing imports it (shared/ never imports an app)."""
