"""NKey and credentials (JWT) authentication against real servers, keys made by `nkeys`."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import nkeys
import pytest

from natsmesh.config import Settings
from natsmesh.ops.server import start_server
from natsmesh.session import connect
from tests.cli.test_cli import natsmesh_bin


def keypair(prefix: int) -> tuple[bytes, Any]:
    seed = nkeys.encode_seed(secrets.token_bytes(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed))


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS JWT (ed25519-nkey) signed by ``signer``."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {"jti": secrets.token_hex(16).upper(), "iat": int(time.time()), **claims}
    body = _b64(json.dumps(claims).encode())
    return (header + b"." + body + b"." + _b64(signer.sign(header + b"." + body))).decode()


def cli_list(url: str, *auth: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*natsmesh_bin(), "--server", url, *auth, "list", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_nkey_seed_file(tmp_path: Path) -> None:
    seed, user = keypair(nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    os.chmod(seed_file, 0o600)
    config = tmp_path / "nkey.conf"
    config.write_text(
        f'authorization {{ users: [ {{ nkey: "{user.public_key.decode()}" }} ] }}\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    server = start_server(
        tmp_path / "s", config_file=config, extra_args=("-a", "127.0.0.1", "-p", "-1")
    )
    try:
        async with connect(Settings(nats_url=server.url, nkey_seed_file=str(seed_file))) as mesh:
            assert mesh.nc.is_connected
        ok = cli_list(server.url, "--nkey", str(seed_file))
        assert ok.returncode == 0, ok.stderr
        other = tmp_path / "other.nk"
        other.write_bytes(keypair(nkeys.PREFIX_BYTE_USER)[0])
        refused = cli_list(server.url, "--nkey", str(other))
        assert refused.returncode == 1
        assert "authorization" in refused.stderr.lower()
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        server.stop()


async def test_credentials_file(tmp_path: Path) -> None:
    _, operator = keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, account = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user = keypair(nkeys.PREFIX_BYTE_USER)
    op_pub, acct_pub = operator.public_key.decode(), account.public_key.decode()
    op_jwt = jwt(
        {"iss": op_pub, "sub": op_pub, "name": "op", "nats": {"type": "operator", "version": 2}},
        operator,
    )
    unlimited = {k: -1 for k in ("subs", "data", "payload", "imports", "exports", "conn", "leaf",
                                 "mem_storage", "disk_storage", "streams", "consumer")}  # fmt: skip
    acct_jwt = jwt(
        {"iss": op_pub, "sub": acct_pub, "name": "mesh",
         "nats": {"limits": {**unlimited, "wildcards": True}, "type": "account", "version": 2}},
        operator,
    )  # fmt: skip
    _, system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    sys_pub = system.public_key.decode()
    sys_jwt = jwt(
        {"iss": op_pub, "sub": sys_pub, "name": "SYS", "nats": {"type": "account", "version": 2}},
        operator,
    )
    user_jwt = jwt(
        {"iss": acct_pub, "sub": user.public_key.decode(), "name": "agent",
         "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}},
        account,
    )  # fmt: skip
    creds = tmp_path / "agent.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed.decode()}\n------END USER NKEY SEED------\n"
    )
    config = tmp_path / "operator.conf"
    config.write_text(
        f'operator: "{op_jwt}"\nsystem_account: {sys_pub}\nresolver: MEMORY\n'
        f'resolver_preload: {{ {acct_pub}: "{acct_jwt}", {sys_pub}: "{sys_jwt}" }}\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    server = start_server(
        tmp_path / "s", config_file=config, extra_args=("-a", "127.0.0.1", "-p", "-1")
    )
    try:
        async with connect(Settings(nats_url=server.url, creds_file=str(creds))) as mesh:
            assert mesh.nc.is_connected
        ok = cli_list(server.url, "--creds", str(creds))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout) == []
        refused = cli_list(server.url)
        assert refused.returncode == 1 and "authorization" in refused.stderr.lower()
    finally:
        server.stop()


@pytest.mark.parametrize("missing", ["seed", "creds"])
def test_a_missing_key_file_is_one_line(tmp_path: Path, missing: str) -> None:
    flag = "--nkey" if missing == "seed" else "--creds"
    out = cli_list("nats://127.0.0.1:1", flag, str(tmp_path / "nope"))
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (openssl)."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=natsmesh test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "1", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.parametrize("optional", [False, True])
async def test_tls_url_talks_tls(tmp_path: Path, optional: bool) -> None:
    """tls:// works against a TLS server, also one where TLS is optional (it upgrades)."""
    ca, cert, key = _certificates(tmp_path)
    config = tmp_path / "tls.conf"
    config.write_text(
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
        + ("allow_non_tls: true\n" if optional else "")
        + f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    server = start_server(
        tmp_path / "s", config_file=config, extra_args=("-a", "127.0.0.1", "-p", "-1")
    )
    port = server.url.rsplit(":", 1)[1]
    try:
        settings = Settings(nats_url=f"tls://127.0.0.1:{port}", tls_ca=str(ca))
        async with connect(settings) as mesh:
            assert mesh.nc._transport is not None
            ssl_object = mesh.nc._transport._io_writer.get_extra_info("ssl_object")  # type: ignore[attr-defined]
            assert ssl_object is not None, "the connection is encrypted"
    finally:
        server.stop()
