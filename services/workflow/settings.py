"""Settings of the workflow service (env prefix PITCREW_WORKFLOW_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_WORKFLOW_", extra="ignore")

    service_name: str = "workflow"
    port: int = 8002
    # How often the SLA timer scheduler looks for due timers; the firing lag is at most about this.
    timer_poll_seconds: float = Field(default=0.25, gt=0, le=10)
    # Where request attachments are stored (one file per attachment, named by its id), and their size cap.
    attachments_dir: str = "var/workflow-attachments"
    attachment_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
