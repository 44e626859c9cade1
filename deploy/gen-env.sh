#!/bin/sh
# Write .env (for docker compose) from .env.example, each "replace-me..." value replaced by a
# fresh random hex secret. Refuses to overwrite an existing .env.
set -eu
cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo ".env exists; remove it first if you really want new secrets (the database roles keep the old ones)" >&2
    exit 1
fi
python3 - <<'PY'
import re
import secrets

text = open(".env.example", encoding="utf-8").read()
text = re.sub(r"replace-me[A-Za-z0-9-]*", lambda _: secrets.token_hex(32), text)
with open(".env", "x", encoding="utf-8") as out:
    out.write(text)
PY
chmod 600 .env
echo "wrote .env with fresh secrets"
