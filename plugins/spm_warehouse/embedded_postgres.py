"""A private PostgreSQL cluster in a project-local folder.

Why: a newcomer must get a working warehouse with `make demo` without
installing or configuring a database server by hand. When no warehouse
connection is configured, the commands start this cluster and hand its URL
to Airflow, dbt and the tests.

Safety rules:
- The cluster is created by us and carries a marker file; a data directory
  without our marker is never started, stopped or deleted.
- It listens on 127.0.0.1 only, on a free port chosen at creation, with its
  Unix socket inside the state folder (never the system's socket directory).
- Every connection authenticates with scram-sha-256 (pg_hba.conf has no
  `trust` line): the superuser's password is generated once into the
  secrets file beside the state folder (`.local/secrets.env`, mode 0600,
  SPM_PG_SUPERUSER_PASSWORD) and carried by `url()`. A cluster created by an
  older version with `trust` is upgraded at its next start: the password is
  set while trust still admits us, then pg_hba.conf is replaced and reloaded.
- `initdb` and `pg_ctl` refuse to run as root, so when we are root they run
  as an unprivileged user (default `postgres`, else `nobody`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from spm_warehouse import secrets_file, settings

log = logging.getLogger(__name__)

MARKER = "spm_warehouse_embedded.json"
DEFAULT_SUPERUSER = "postgres"
SUPERUSER_SECRET = "SPM_PG_SUPERUSER_PASSWORD"
AUTH_METHOD = "scram-sha-256"
# Only these two lines: the socket (in the state folder) and 127.0.0.1, both with a password.
PG_HBA = ("# written by spm_warehouse.embedded_postgres: every connection needs its password (scram-sha-256)\n"
          "local   all   all                 scram-sha-256\n"
          "host    all   all   127.0.0.1/32  scram-sha-256\n")


class EmbeddedPostgresError(RuntimeError):
    """A problem the user must act on; the message says what to do."""


def _is_server_bindir(path: Path) -> bool:
    return (path / "initdb").is_file() and (path / "pg_ctl").is_file() and (path / "postgres").is_file()


def candidate_bindirs() -> list[Path]:
    """Where PostgreSQL server binaries may live, in order of preference."""
    candidates: list[Path] = []
    override = settings.get("SPM_PG_BINDIR")
    if override:
        candidates.append(Path(override))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.SubprocessError, OSError):
            pass
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    candidates.extend(Path(p) for p in versions)
    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True))
    try:  # a pip-installed bundle, as a last resort (`pip install pgserver`)
        import pgserver  # type: ignore[import-not-found]

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    return candidates


def find_bindir() -> Path:
    """The first folder holding initdb, pg_ctl and postgres."""
    seen: list[str] = []
    for candidate in candidate_bindirs():
        if str(candidate) in seen:
            continue
        seen.append(str(candidate))
        if _is_server_bindir(candidate):
            return candidate
    raise EmbeddedPostgresError(
        "No PostgreSQL server binaries found (looked in: "
        + (", ".join(seen) or "nothing")
        + "). Install them (Debian: apt-get install postgresql), set SPM_PG_BINDIR, "
        "`pip install pgserver`, or point AIRFLOW_CONN_WAREHOUSE at an existing server."
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def unprivileged_user() -> str | None:
    """The user to run server binaries as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    wanted = settings.get("SPM_PG_RUN_AS")
    for name in ([wanted] if wanted else []) + ["postgres", "nobody"]:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise EmbeddedPostgresError("Running as root and no unprivileged user (postgres, nobody) exists; set SPM_PG_RUN_AS.")


def as_user_command(argv: list[str], user: str | None) -> list[str]:
    """Wrap a command so that it runs as `user` (None: as ourselves)."""
    if user is None:
        return argv
    # runuser lives in sbin, which a non-login root shell (cron, a CI runner) may lack on its PATH
    runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if runuser:
        return [runuser, "-u", user, "--", *argv]
    setpriv = shutil.which("setpriv")
    if setpriv:
        entry = pwd.getpwnam(user)
        return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", *argv]
    raise EmbeddedPostgresError("Running as root but neither runuser nor setpriv is available to drop privileges.")


@dataclass
class EmbeddedPostgres:
    """One private cluster under `state_dir` (data in `state_dir/data`)."""

    state_dir: Path
    superuser: str = DEFAULT_SUPERUSER

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def marker_path(self) -> Path:
        return self.state_dir / MARKER

    @property
    def log_path(self) -> Path:
        return self.state_dir / "postgres.log"

    def _marker(self) -> dict:
        try:
            return json.loads(self.marker_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def port(self) -> int:
        port = self._marker().get("port")
        if not port:
            raise EmbeddedPostgresError(f"{self.state_dir} holds no cluster created by this project.")
        return int(port)

    @property
    def secrets_path(self) -> Path:
        """The secrets file holding the superuser's password: secrets.env beside the state folder."""
        return self.state_dir.parent / "secrets.env"

    def password(self) -> str:
        """The superuser's password: SPM_PG_SUPERUSER_PASSWORD, else generated once into the secrets file."""
        configured = settings.get(SUPERUSER_SECRET)
        if configured:
            return configured
        return secrets_file.ensure(self.secrets_path, {SUPERUSER_SECRET: lambda: secrets.token_urlsafe(24)})[
            SUPERUSER_SECRET]

    def userinfo(self) -> str:
        """user:password for a URL (quoted)."""
        return f"{quote(self.superuser, safe='')}:{quote(self.password(), safe='')}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.userinfo()}@127.0.0.1:{self.port}/{database}"

    def exists(self) -> bool:
        return self.marker_path.is_file() and (self.data_dir / "PG_VERSION").is_file()

    def _check_ours(self) -> None:
        """Refuse any data directory we did not create."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()) and not self.marker_path.is_file():
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty and was not created by this project "
                f"(no {MARKER}); refusing to touch it."
            )
        marker = self._marker()
        if marker and Path(marker.get("data_dir", "")) != self.data_dir:
            raise EmbeddedPostgresError(f"{self.marker_path} names another data directory; refusing to touch it.")

    def _run(self, argv: list[str], user: str | None, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(as_user_command(argv, user), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                + (f"\nServer log: {self.log_path}" if self.log_path.exists() else "")
            )
        return proc

    def init(self) -> None:
        """Create the cluster once; a second call does nothing."""
        self._check_ours()
        if self.exists():
            return
        bindir = find_bindir()
        user = unprivileged_user()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.state_dir, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            _ensure_traversable(self.state_dir)
        os.chmod(self.data_dir, 0o700)
        pwfile = self.state_dir / ".initdb_password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.password() + "\n")
        try:
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser, f"--auth={AUTH_METHOD}",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync"],
                user,
                timeout=300,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()
        port = free_port()
        with open(self.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# written by spm_warehouse.embedded_postgres\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {port}\n"
                f"unix_socket_directories = '{self.state_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = '512MB'\nwork_mem = '64MB'\nmaintenance_work_mem = '512MB'\n"
                "max_wal_size = '4GB'\nmax_connections = 200\n"
                "jit = off\n"
            )
        self.marker_path.write_text(
            json.dumps({"port": port, "data_dir": str(self.data_dir), "bindir": str(bindir), "run_as": user,
                        "auth": AUTH_METHOD}, indent=2)
        )

    def _write_hba(self) -> None:
        """Replace pg_hba.conf (keeping its owner: the server's user) with the password-only rules."""
        with open(self.data_dir / "pg_hba.conf", "w", encoding="utf-8") as hba:
            hba.write(PG_HBA)

    def _secure_legacy_cluster(self) -> None:
        """Upgrade a running cluster created with `trust` (older versions): password, pg_hba.conf, reload."""
        import psycopg  # psycopg is only needed here and by callers; keep the module importable without it
        from psycopg import sql

        plain = f"postgresql://{quote(self.superuser, safe='')}@127.0.0.1:{self.port}/postgres"
        try:
            conn = psycopg.connect(plain, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError:
            try:  # secured by hand already, with our password: only the marker is behind
                psycopg.connect(self.url(), connect_timeout=10).close()
            except psycopg.OperationalError as exc:
                raise EmbeddedPostgresError(
                    f"the embedded cluster in {self.state_dir} was created with trust authentication and "
                    f"refuses both a password-less login and the password in {self.secrets_path} "
                    f"({str(exc).strip().splitlines()[-1]}); set {SUPERUSER_SECRET} to its superuser's "
                    f"password, or `make clean` to start a new cluster") from None
        else:
            with conn:
                conn.execute("SET password_encryption = 'scram-sha-256'")
                conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(self.superuser), sql.Literal(self.password())))
                self._write_hba()
                conn.execute("SELECT pg_reload_conf()")
        marker = self._marker()
        marker["auth"] = AUTH_METHOD
        self.marker_path.write_text(json.dumps(marker, indent=2))
        log.warning("embedded PostgreSQL in %s: upgraded from trust to %s authentication; the superuser's "
                    "password is %s in %s", self.state_dir, AUTH_METHOD, SUPERUSER_SECRET, self.secrets_path)

    def is_running(self) -> bool:
        if not self.exists():
            return False
        bindir = Path(self._marker().get("bindir") or find_bindir())
        proc = self._run([str(bindir / "pg_ctl"), "status", "-D", str(self.data_dir)], self._marker().get("run_as"), check=False)
        return proc.returncode == 0

    def start(self) -> str:
        """Init if needed, start if stopped; return the server URL. Reuses a running cluster."""
        self.init()
        if not self.is_running():
            marker = self._marker()
            bindir = Path(marker.get("bindir") or find_bindir())
            if not _is_server_bindir(bindir):
                bindir = find_bindir()
            if not _port_free(self.port):
                raise EmbeddedPostgresError(
                    f"Port {self.port} recorded for {self.data_dir} is taken by another program; stop it or remove {self.state_dir}."
                )
            self._run(
                [str(bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60"],
                marker.get("run_as"),
                timeout=120,
            )
        self._wait_ready()
        if self._marker().get("auth") != AUTH_METHOD:
            self._secure_legacy_cluster()
        return self.url()

    def _wait_ready(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise EmbeddedPostgresError(f"PostgreSQL did not accept connections on port {self.port}; see {self.log_path}.")

    def stop(self) -> bool:
        """Stop the cluster if we created it and it runs; True when it was stopped."""
        self._check_ours()
        if not self.is_running():
            return False
        marker = self._marker()
        bindir = Path(marker.get("bindir") or find_bindir())
        self._run([str(bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"], marker.get("run_as"))
        return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _ensure_traversable(path: Path) -> None:
    """Let the unprivileged server user reach its folder through our parents."""
    for parent in list(path.parents)[:-1]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        except PermissionError:
            break
