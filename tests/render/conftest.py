"""Fixtures for the render tests: a campaign directory, contexts, a DKIM key pair."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.render import CampaignContext

SECRET = b"test-secret-0123456789"
PUBLIC_URL = "https://links.acme.example"
POSTAL = "1 Main St, Springfield, CA 90000, USA"


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    """An empty directory standing for the one holding campaign.yaml."""
    return tmp_path


@pytest.fixture
def campaign_context() -> CampaignContext:
    return CampaignContext(
        tenant_id=3,
        campaign_id=11,
        channel="email",
        secret=SECRET,
        public_url=PUBLIC_URL,
        tenant_name="Acme Motors",
        postal_address=POSTAL,
        sender_name="Acme Service",
        agent_name="Sam",
    )


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(private key PEM, DNS TXT record) of a fresh 2048-bit RSA key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to generate a DKIM test key")
    key_file = tmp_path_factory.mktemp("dkim") / "private.pem"
    subprocess.run([openssl, "genrsa", "-out", str(key_file), "2048"], check=True,
                   capture_output=True)
    public_der = subprocess.run(
        [openssl, "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    return key_file.read_bytes(), record


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
