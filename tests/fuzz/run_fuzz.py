"""`make fuzz`: schemathesis against the gateway of a running stack, seeded and bounded in time.

Starts the whole stack on SQLite in a temporary folder (NATS included, demo data loaded so reads
meet real rows), mints an admin token, and runs schemathesis over every operation of the
gateway's merged OpenAPI document with the checks that matter here: no server error, every
status and media type documented, every body matching its schema. Exits with schemathesis's
code (0: zero failures). Reports (JUnit and a pytest file that reproduces each failure) go to
var/fuzz/.

    .venv/bin/python tests/fuzz/run_fuzz.py [--seconds 300] [--seed 20261203] [--examples 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.devtokens import mint_dev_token  # noqa: E402
from gateway.settings import Settings as GatewaySettings  # noqa: E402
from pitcrew.launcher import free_port, start_stack  # noqa: E402
from pitcrew.topology import PROCESSES  # noqa: E402

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def whole_document(gateway: str, token: str, timeout: float = 180) -> dict:
    """The merged document once every service is in it: a service still warming up (or slow to
    build its document on a busy machine) would otherwise drop its operations from the run."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{gateway}/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        doc = r.json() if r.status_code == 200 else {}
        missing = doc.get("x-pitcrew-unavailable", []) if doc else ["gateway"]
        if not missing:
            return doc
        if time.monotonic() > deadline:
            raise SystemExit(f"the merged OpenAPI document still lacks {missing}")
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description="schemathesis through the gateway")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("PITCREW_FUZZ_SECONDS", "300")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("PITCREW_FUZZ_SEED", "20261203")))
    parser.add_argument("--examples", type=int, default=int(os.environ.get("PITCREW_FUZZ_EXAMPLES", "30")))
    parser.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="pitcrew-fuzz-"))
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env["PITCREW_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    env.update({"PITCREW_VAR_DIR": str(var), "PITCREW_LOG_LEVEL": "WARNING"})
    # The fuzzer is one principal sending thousands of requests: the per-principal limits would answer 429.
    env.update(
        {"PITCREW_GATEWAY_RATE_LIMIT_READ": "1000000/minute", "PITCREW_GATEWAY_RATE_LIMIT_WRITE": "1000000/minute"}
    )
    # The coverage phase posts the largest batches the API accepts (10,000 touchpoints and conversions on
    # one journey), so every later attribution, analysis or export runs to its time limit. Shorter
    # limits take the same path (a 422 naming the limit) in a fraction of the fuzzer's time budget.
    env.update(
        {
            "PITCREW_KPI_ATTRIBUTION_SECONDS": "2",
            "PITCREW_REGISTRY_ANALYSIS_SECONDS": "2",
            "PITCREW_REGISTRY_EXPORT_SECONDS": "5",
        }
    )
    stack, urls, _ = start_stack(var_dir=var, env=env, echo=lambda *_: None, ready_timeout=180)
    reports = ROOT / "var" / "fuzz"
    reports.mkdir(parents=True, exist_ok=True)
    try:
        gateway = urls["gateway"]
        token = mint_dev_token(GatewaySettings(), "fuzzer", ["admin"], (), 24 * 3600)
        if args.demo:
            from pitcrew.demo import load_demo

            load_demo(gateway, token, echo=lambda *_: None)
        document = reports / "openapi.json"
        document.write_text(json.dumps(whole_document(gateway, token)))
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            str(document),
            "--url",
            gateway,
            "--checks",
            CHECKS,
            "--seed",
            str(args.seed),
            "--max-time",
            str(args.seconds),
            "--max-examples",
            str(args.examples),
            # One worker: with two, hypothesis parses lambdas' source (ast.parse) from two threads at once,
            # which CPython 3.11 before 3.11.8 can fail with "AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",
            "--header",
            f"Authorization: Bearer {token}",
            "--report",
            "junit,pytest",
            "--report-dir",
            str(reports),
            "--no-color",
        ]
        print(f"fuzzing {gateway} for at most {args.seconds} s (seed {args.seed}); logs in {var / 'log'}", flush=True)
        hooks = {"SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)}
        return subprocess.run(command, cwd=ROOT, env={**os.environ, **hooks}, check=False).returncode
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
