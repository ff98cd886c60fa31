"""Where tests keep reports: a folder (the filesystem storage), or a bucket of a local S3-compatible server
(moto's server mode, a subprocess on a free loopback port)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from carrieropt.processes import process_stop

ACCESS_KEY, SECRET_KEY, REGION = "test-access-key", "test-secret-key", "us-east-1"


def folder_storage(folder) -> dict:
    return {"BACKEND": "carrieropt.storage.AtomicFileSystemStorage", "OPTIONS": {"location": str(folder)}}


def use_report_folder(settings, folder) -> None:
    """Reports under `folder` for the rest of the test (STORAGES["reports"])."""
    settings.STORAGES = {**settings.STORAGES, "reports": folder_storage(folder)}


@dataclass
class S3Server:
    url: str
    bucket: str

    def env(self) -> dict[str, str]:
        """The settings a process (web or worker) needs to keep reports in this bucket."""
        return {"REPORTS_S3_BUCKET": self.bucket, "REPORTS_S3_ENDPOINT_URL": self.url, "REPORTS_S3_REGION": REGION,
                "REPORTS_S3_ACCESS_KEY_ID": ACCESS_KEY, "REPORTS_S3_SECRET_ACCESS_KEY": SECRET_KEY}

    def storage(self) -> dict:
        return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": self.bucket, "endpoint_url": self.url, "region_name": REGION, "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY, "location": "reports", "file_overwrite": True, "default_acl": None}}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY)

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.client().list_objects_v2(Bucket=self.bucket).get("Contents", [])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(*, bucket: str | None = None, timeout: float = 60):
    """moto's S3-compatible server on 127.0.0.1 and a free port, with one empty bucket; stopped afterwards."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],  # noqa: S603
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = S3Server(url=f"http://127.0.0.1:{port}", bucket=bucket or f"reports-{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode} before answering on port {port}")
            try:
                httpx.get(f"{server.url}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer on port {port} within {timeout}s") from None
                time.sleep(0.1)
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        process_stop(proc)
