"""Where attachment files live once accepted: a small interface (`FileStore`) with two
implementations, chosen by `Settings.attachments_storage`.

- `DiskStore` (the default): one file per attachment in `Settings.attachments_dir`, named by its id.
- `S3Store`: one object per attachment in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...),
  under `Settings.s3_prefix` + its id, through aiobotocore (botocore's SigV4 signing, retries and
  error parsing). Path-style addressing for stores that need it (`s3_path_style`).

An upload is first streamed to a staging file on local disk (`attachments_dir`), counted against
the size cap and checked (`attachments.receive`, `check_content`) before the store sees a byte;
`put` then writes the whole object at once (an S3 PUT is atomic: an object exists complete or not
at all), and `delete` removes it again when the transaction that records its row does not commit.
Failures of the store are `Unavailable` (503): the request writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from shared.errors import NotFound, Unavailable

log = structlog.get_logger("workflow.files")
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Opened:
    """A stored file being read: its size and its bytes, chunk by chunk (closed once exhausted)."""

    size: int
    chunks: AsyncIterator[bytes]


class FileStore(Protocol):
    """Attachment files by key (the attachment's id)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, source: Path, *, content_type: str, size: int) -> None:
        """Store the staged file `source` (complete and checked) under `key`; Unavailable on failure."""
        ...

    async def open(self, key: str) -> Opened:
        """The file under `key`; NotFound when it is not there, Unavailable when the store is unreachable."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` if it is there (best effort: a failure is logged, not raised)."""
        ...


class DiskStore:
    """Files in a directory, moved into place from the staging file (same file system: atomic)."""

    def __init__(self, directory: Path):
        self.directory = directory

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def put(self, key: str, source: Path, *, content_type: str, size: int) -> None:
        try:
            await asyncio.to_thread(os.replace, source, self.directory / key)
        except OSError as exc:
            raise Unavailable(f"The attachment could not be stored: {exc.strerror or exc}.") from exc

    async def open(self, key: str) -> Opened:
        path = self.directory / key
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"The file of attachment {key} is missing from storage.") from exc
        except OSError as exc:
            raise Unavailable(f"The attachment could not be read: {exc.strerror or exc}.") from exc
        size = os.fstat(handle.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK):
                    yield chunk
            finally:
                await asyncio.to_thread(handle.close)

        return Opened(size, chunks())

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self.directory / key)


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    path_style: bool = False
    prefix: str = ""


class S3Store:
    """Objects in an S3-compatible bucket; one aiobotocore client for the process."""

    def __init__(self, config: S3Config):
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        c = self.config
        config = AioConfig(
            s3={"addressing_style": "path" if c.path_style else "auto"},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            # S3-compatible stores do not all take the newer default checksums (CRC32 on every PUT).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=c.endpoint_url,
                region_name=c.region,
                aws_access_key_id=c.access_key_id,
                aws_secret_access_key=c.secret_access_key,
                config=config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def _key(self, key: str) -> str:
        return f"{self.config.prefix}{key}"

    async def put(self, key: str, source: Path, *, content_type: str, size: int) -> None:
        handle = await asyncio.to_thread(source.open, "rb")
        try:
            await self._client.put_object(
                Bucket=self.config.bucket,
                Key=self._key(key),
                Body=handle,
                ContentLength=size,
                ContentType=content_type,
            )
        except Exception as exc:
            raise Unavailable(f"The attachment could not be stored: {_reason(exc)}.") from exc
        finally:
            await asyncio.to_thread(handle.close)

    async def open(self, key: str) -> Opened:
        try:
            answer = await self._client.get_object(Bucket=self.config.bucket, Key=self._key(key))
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"The file of attachment {key} is missing from storage.") from exc
            raise Unavailable(f"The attachment could not be read: {_reason(exc)}.") from exc
        body = answer["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            async with body as stream:
                async for chunk in stream.iter_chunks(CHUNK):
                    yield chunk

        return Opened(int(answer["ContentLength"]), chunks())

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.config.bucket, Key=self._key(key))
        except Exception as exc:  # the row is not there: an orphaned object is harmless, and logged
            log.warning("attachment_delete_failed", key=self._key(key), error=repr(exc))


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _reason(exc: Exception) -> str:
    return _code(exc) or type(exc).__name__


def from_settings(settings: Any) -> FileStore:
    """The store `Settings.attachments_storage` names (`settings` is the service's `Settings`)."""
    if settings.attachments_storage == "s3":
        secret = settings.s3_secret_access_key
        return S3Store(
            S3Config(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=secret.get_secret_value() if secret is not None else None,
                path_style=settings.s3_path_style,
                prefix=settings.s3_prefix,
            )
        )
    return DiskStore(Path(settings.attachments_dir))
