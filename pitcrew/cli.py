"""The `pitcrew` command: up, migrate, token, status, events-doc."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import typer

from pitcrew.topology import APPS, PROCESSES

app = typer.Typer(help="Pitcrew: the marketing-operations platform.", no_args_is_help=True)


@app.command()
def up(
    demo: bool = typer.Option(False, "--demo", help="Load a believable demo company after start-up."),
    var_dir: Path = typer.Option(Path(os.environ.get("PITCREW_VAR_DIR", "var")), help="Data folder."),
    host: str = typer.Option("127.0.0.1", help="Address every process listens on."),
    ready_timeout: float = typer.Option(180.0, help="Seconds every app gets to become ready (a busy laptop is slow)."),
) -> None:
    """Start NATS, migrate every database, start the five services, a local SMTP sink, the gateway and the console."""
    from gateway.devtokens import mint_dev_token
    from gateway.settings import Settings as GatewaySettings
    from pitcrew.launcher import run_until_signal, start_stack

    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Until the stack is up, SIGTERM unwinds like Ctrl-C so no child is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    typer.echo("starting NATS, migrating, starting the apps ...")
    stack, urls, nats_url = start_stack(host=host, var_dir=var_dir.resolve(), ready_timeout=ready_timeout)
    try:
        token = mint_dev_token(GatewaySettings(), "dev-admin", ["admin"], ttl=12 * 3600)
        typer.echo("\nPitcrew is up.")
        typer.echo(f"  NATS      {nats_url}")
        for name, url in urls.items():
            typer.echo(f"  {name:<9} {url}")
        typer.echo(f"\n  Console   {urls['gateway']}/  (sign in as any user and role in development)")
        typer.echo(f"  API docs  {urls['gateway']}/docs")
        typer.echo(f"  Logs      {var_dir.resolve() / 'log'}")
        if demo:
            from pitcrew.demo import load_demo

            typer.echo("\nloading demo data ...")
            load_demo(urls["gateway"], token, echo=typer.echo)
    except BaseException:
        stack.stop()
        raise
    typer.echo("\nDevelopment admin token (12 h):")
    typer.echo(f"  export PITCREW_TOKEN={token}")
    typer.echo(f'  curl -H "Authorization: Bearer $PITCREW_TOKEN" {urls["gateway"]}/budget/v1/plans')
    typer.echo("\nA process that dies is started again; Ctrl-C stops everything.")
    raise typer.Exit(run_until_signal(stack))


@app.command()
def migrate(
    service: str | None = typer.Argument(None, help="One of: " + ", ".join(APPS) + " (default: all)."),
) -> None:
    """Upgrade a database (or all of them) to the latest migration."""
    from pitcrew.launcher import database_url
    from pitcrew.migrations import upgrade

    names = [service] if service else list(APPS)
    var_dir = Path(os.environ.get("PITCREW_VAR_DIR", "var"))
    for name in names:
        if name not in APPS:
            raise typer.BadParameter(f"unknown service {name!r}; choose from {', '.join(APPS)}")
        url = database_url(name, dict(os.environ), var_dir)
        upgrade(name, url)
        typer.echo(f"{name}: migrated ({url.split('@')[-1]})")


@app.command()
def token(
    sub: str = typer.Option(..., "--sub", help="Subject (user name)."),
    role: list[str] = typer.Option(..., "--role", help="Role; repeat for several."),
    scope: list[str] = typer.Option([], "--scope", help="Scope such as region:EMEA; repeat for several."),
    ttl: int = typer.Option(3600, "--ttl", help="Lifetime in seconds."),
) -> None:
    """Print a development JWT the gateway accepts (HS256, PITCREW_GATEWAY_JWT_SECRET)."""
    from gateway.devtokens import mint_dev_token
    from gateway.settings import Settings as GatewaySettings
    from shared.identity import ROLES

    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    typer.echo(mint_dev_token(GatewaySettings(), sub, role, scope, ttl))


@app.command()
def status() -> None:
    """Show whether each app answers /ready."""
    failed = False
    with httpx.Client(timeout=2.0) as client:
        for name, info in PROCESSES.items():
            port = int(os.environ.get(f"PITCREW_{name.upper()}_PORT", info.default_port))
            url = f"http://127.0.0.1:{port}"
            try:
                r = client.get(f"{url}/ready")
                state = "ready" if r.status_code == 200 else f"not ready ({r.status_code})"
                failed |= r.status_code != 200
            except httpx.HTTPError:
                state, failed = "down", True
            typer.echo(f"{name:<9} {url:<24} {state}")
    raise typer.Exit(1 if failed else 0)


@app.command("events-doc")
def events_doc(
    output: Path | None = typer.Option(None, "--output", help="Where to write (default: docs/events.md)."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if the file differs."),
) -> None:
    """Render docs/events.md from every service's event catalogue (and the webhook contract)."""
    from pitcrew.eventsdoc import OUTPUT, render

    target = output or OUTPUT
    text = render()
    if check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            typer.echo(f"{target} is out of date: run `pitcrew events-doc`.", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is up to date.")
        return
    target.write_text(text)
    typer.echo(f"wrote {target}")


@app.command()
def makemigration(
    service: str = typer.Argument(..., help="The app whose models changed."),
    message: str = typer.Option(..., "-m", help="What the migration does."),
) -> None:
    """Developer tool: autogenerate a migration against a scratch SQLite database."""
    import tempfile

    from pitcrew.migrations import revision

    with tempfile.TemporaryDirectory() as tmp:
        revision(service, f"sqlite:///{tmp}/{service}.db", message)
