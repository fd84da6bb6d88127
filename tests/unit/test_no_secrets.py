"""No secret is committed: every tracked file is scanned for private keys, cloud and API keys,
passwords in URLs and credential assignments with literal values."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^@\s/'\"{}$<>]{4,})@"),
    "credential literal": re.compile(
        r"""(?i)\b(password|passwd|secret|api_key|apikey|access_key|auth_token|token)\b\s*[:=]\s*"""
        r"""['"]([^'"\s${}<>]{12,})['"]"""),
}
# Test fixtures that stand for secrets on purpose (a throwaway token, a fake URL); each is
# matched exactly, so a real secret next to them is still found.
ALLOWED = {
    "tests/unit/sources/test_source_config.py": {"postgresql://app:" + "secret@db/shop"},
}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # PASSWORD, USER_PASSWORD: documentation, not a value


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def _findings(rel: str, text: str) -> list[str]:
    found = []
    for name, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if any(m.group(0) in a for a in ALLOWED.get(rel, ())):
                continue
            if m.groups() and PLACEHOLDER.match(m.groups()[-1]):
                continue
            found.append(f"{rel}: {name}: {m.group(0)[:60]}")
    return found


def test_no_secret_is_committed() -> None:
    files = _tracked()
    findings: list[str] = []
    scanned = 0
    for rel in files:
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        scanned += 1
        findings += _findings(rel, text)
    print(f"\nsecret scan: {scanned} tracked text files, {len(findings)} findings")
    assert scanned > 100
    assert not findings, findings


# Assembled at run time, so that this file holds no secret-shaped text for the scan above.
@pytest.mark.parametrize("leak", [
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "aws_key = AKIA" + "ABCDEFGHIJKLMNOP",
    "url: postgresql://app:" + "hunter2hunter2@db:5432/shop",
    'password: "' + 'correct-horse-battery"',
    "TOKEN = 'ghp_" + "a" * 36 + "'",
])
def test_the_scanner_finds_planted_secrets(leak: str) -> None:
    assert _findings("planted.yaml", leak), leak


@pytest.mark.parametrize("fine", [
    "password_env: PGPASSWORD",
    "url: postgresql://app@db:5432/shop",
    'token = os.environ["RAYPIPE_TOKEN"]',
    "auth_token_file: /run/secrets/raypipe-token",
])
def test_the_scanner_lets_references_to_secrets_pass(fine: str) -> None:
    assert not _findings("fine.yaml", fine), fine
