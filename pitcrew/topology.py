"""Where each Pitcrew app lives: one table used by the launcher, the CLI and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AppInfo:
    name: str
    default_port: int
    module: str  # "package.main:app" for uvicorn
    package_dir: Path

    @property
    def migrations_dir(self) -> Path:
        return self.package_dir / "migrations"


SERVICES: dict[str, AppInfo] = {
    name: AppInfo(name, port, f"services.{name}.main:app", ROOT / "services" / name)
    for name, port in (("budget", 8001), ("workflow", 8002), ("kpi", 8003), ("registry", 8004), ("notify", 8005))
}
GATEWAY = AppInfo("gateway", 8000, "gateway.main:app", ROOT / "gateway")
APPS: dict[str, AppInfo] = {**SERVICES, "gateway": GATEWAY}  # the apps with a database
# The web console keeps no database: served to browsers through the gateway at `/`.
CONSOLE = AppInfo("console", 8006, "console.main:app", ROOT / "console")
PROCESSES: dict[str, AppInfo] = {**APPS, "console": CONSOLE}  # everything `pitcrew up` starts
