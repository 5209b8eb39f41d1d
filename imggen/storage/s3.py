"""Storing finished images in an S3 bucket (AWS, or any S3-compatible endpoint) with verified checksums.

Credentials and places come from the training-set seed's variables (AWS_ACCESS_KEY,
AWS_ACCESS_SECRET, AWS_REGION, AWS_USER_FILES_BUCKET) with boto3's standard ones
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, profiles, roles) as the fallback,
and AWS_ENDPOINT_URL for a local or third-party S3. Every upload sends its SHA-256 so S3 refuses
corrupted bytes, then reads the object's head back and compares the checksum, length, content
type and (for plain single-part objects) the MD5 ETag; a mismatch is a transient error, so the
upload is tried again. :meth:`S3Store.check` proves, before a run pays for anything, that the
bucket exists and takes a write under the prefix. boto3 is synchronous: calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from imggen.engine.errors import ErrorKind, TaskError
from imggen.settings import Settings, credential, load_settings

log = logging.getLogger("imggen.storage")

_FATAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
                "AllAccessDisabled", "AccountProblem", "InvalidBucketName", "ExpiredToken"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "BadDigest"}

# One boto3 session for the process: its first client reads the S3 service's model (a good part of
# a second), later ones (the next run in a notebook or a benchmark) take milliseconds. Sessions are
# not thread-safe, so clients are made under a lock.
_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@dataclass(frozen=True)
class StoredObject:
    """An uploaded object and how it was verified."""

    bucket: str
    key: str
    url: str
    sha256_b64: str
    content_type: str
    size: int


class S3Store:
    """Upload bytes under ``prefix`` in ``bucket``; ``put`` is idempotent (same key, same bytes)."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        client=None,
    ) -> None:
        if not bucket:
            raise ValueError("no S3 bucket: set AWS_USER_FILES_BUCKET")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._endpoint_url = endpoint_url
        self._region = region
        self._client = client
        self._client_options = {
            "region_name": region, "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key, "aws_secret_access_key": secret_key,
        }
        self._client_lock = threading.Lock()
        if client is None:  # making a boto3 client takes a good part of a second: start now, in the background
            threading.Thread(target=self.client, name="s3-client", daemon=True).start()

    def client(self):
        """The boto3 client (the first caller makes it; others wait for it)."""
        with self._client_lock:
            if self._client is None:
                config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3})
                with _SESSION_LOCK:
                    self._client = _session().client("s3", config=config, **self._client_options)
            return self._client

    @classmethod
    def from_settings(cls, *, prefix: str = "", settings: Settings | None = None) -> "S3Store":
        """A store configured from the environment (and ``.env``)."""
        settings = settings or load_settings()
        return cls(
            settings.aws_user_files_bucket or "",
            prefix=prefix,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            access_key=credential("aws_access_key", settings),
            secret_key=credential("aws_access_secret", settings),
        )

    def key_for(self, name: str) -> str:
        return self.prefix + name

    @property
    def location(self) -> str:
        """``s3://bucket/prefix/``: where this store's objects go."""
        return f"s3://{self.bucket}/{self.prefix}"

    def url_for(self, key: str) -> str:
        """The object's URL: path style on a custom endpoint, virtual-hosted style on AWS."""
        if self._endpoint_url:
            return f"{self._endpoint_url.rstrip('/')}/{self.bucket}/{quote(key)}"
        region = self._region or self.client().meta.region_name or "us-east-1"
        return f"https://{self.bucket}.s3.{region}.amazonaws.com/{quote(key)}"

    async def check(self) -> None:
        """Raise a fatal :class:`TaskError` in one line unless the bucket exists and takes a write
        under the prefix: a head of the bucket, then a small probe object written and deleted."""
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        where = f"s3://{self.bucket}/{self.prefix}"
        try:
            client = self.client()
            client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 404:
                raise TaskError(ErrorKind.FATAL, f"S3 bucket {self.bucket!r} does not exist "
                                                 "(AWS_USER_FILES_BUCKET names it)") from None
            raise _fatal(s3_error(error, f"s3://{self.bucket}")) from None
        except BotoCoreError as error:
            raise _fatal(s3_error(error, f"s3://{self.bucket}")) from None
        probe = self.key_for(f".imggen-write-check-{uuid.uuid4().hex}")
        try:
            client.put_object(Bucket=self.bucket, Key=probe, Body=b"")
        except (ClientError, BotoCoreError) as error:
            raise TaskError(ErrorKind.FATAL, f"cannot write to {where}: {s3_error(error, where).message}") from None
        try:  # a key allowed to write but not to delete still stores images: the empty probe stays then
            client.delete_object(Bucket=self.bucket, Key=probe)
        except (ClientError, BotoCoreError) as error:
            log.warning("could not delete the write check s3://%s/%s: %s", self.bucket, probe,
                        s3_error(error, probe).message)

    async def put(self, name: str, data: bytes, content_type: str) -> StoredObject:
        """Upload ``data`` as ``prefix + name`` and verify what S3 stored."""
        return await asyncio.to_thread(self._put, self.key_for(name), data, content_type)

    def _put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        try:
            client = self.client()
            client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=digest,
            )
            head = client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as error:
            raise s3_error(error, f"s3://{self.bucket}/{key}") from None
        problem = _mismatch(head, data, digest, content_type)
        if problem:
            raise TaskError(ErrorKind.TRANSIENT, f"s3://{self.bucket}/{key} did not verify: {problem}")
        return StoredObject(self.bucket, key, self.url_for(key), digest, content_type, len(data))


def _mismatch(head: dict, data: bytes, digest: str, content_type: str) -> str | None:
    if head.get("ChecksumSHA256") != digest:
        return f"SHA-256 {head.get('ChecksumSHA256')} != {digest}"
    if head.get("ContentLength") != len(data):
        return f"length {head.get('ContentLength')} != {len(data)}"
    if head.get("ContentType") != content_type:
        return f"content type {head.get('ContentType')} != {content_type}"
    etag = str(head.get("ETag", "")).strip('"')
    plain = head.get("ServerSideEncryption") in (None, "AES256") and "-" not in etag and etag
    if plain and etag != hashlib.md5(data).hexdigest():
        return f"ETag {etag} is not the MD5 of the bytes sent"
    return None


def _fatal(error: TaskError) -> TaskError:
    return TaskError(ErrorKind.FATAL, error.message)


def s3_error(error: Exception, where: str) -> TaskError:
    """A boto3 failure as the engine's error kinds; messages name the object, never a credential."""
    if isinstance(error, NoCredentialsError):
        return TaskError(ErrorKind.FATAL, "no AWS credentials: set AWS_ACCESS_KEY and AWS_ACCESS_SECRET")
    if isinstance(error, EndpointConnectionError):
        return TaskError(ErrorKind.TRANSIENT, f"cannot reach S3 for {where}", connection_error=True)
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"S3 {code or status} for {where}"
        if code in _FATAL_CODES or status in (401, 403):
            return TaskError(ErrorKind.FATAL, message)
        if code in _TRANSIENT_CODES or status >= 500:
            return TaskError(ErrorKind.TRANSIENT, message)
        return TaskError(ErrorKind.PERMANENT, message)
    return TaskError(ErrorKind.TRANSIENT, f"S3 upload of {where} failed: {type(error).__name__}",
                     connection_error=True)
