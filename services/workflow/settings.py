"""Settings of the workflow service (env prefix PITCREW_WORKFLOW_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_WORKFLOW_", extra="ignore")

    service_name: str = "workflow"
    port: int = 8002
    # How often the SLA timer scheduler looks for due timers; the firing lag is at most about this.
    timer_poll_seconds: float = Field(default=0.25, gt=0, le=10)
    # Where request attachments are kept: `disk` (one file per attachment in attachments_dir, named by
    # its id) or `s3` (one object per attachment in an S3-compatible bucket, the s3_* settings below).
    # Uploads are staged in attachments_dir either way (counted, checked) before they are stored.
    attachments_storage: Literal["disk", "s3"] = "disk"
    attachments_dir: str = "var/workflow-attachments"
    attachment_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # S3-compatible storage (attachments_storage=s3). Without keys, botocore's usual chain applies
    # (AWS_* variables, a profile, an instance or pod role).
    s3_endpoint_url: str | None = Field(default=None, description="e.g. https://minio.internal:9000; AWS: unset")
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = Field(default=False, description="bucket in the path (MinIO, Ceph), not the host name")
    s3_prefix: str = Field(default="attachments/", max_length=200, description="prepended to each object's key")

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.attachments_storage == "s3" and not self.s3_bucket:
            raise ValueError("PITCREW_WORKFLOW_S3_BUCKET is required when PITCREW_WORKFLOW_ATTACHMENTS_STORAGE=s3")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("give both PITCREW_WORKFLOW_S3_ACCESS_KEY_ID and PITCREW_WORKFLOW_S3_SECRET_ACCESS_KEY")
        return self
