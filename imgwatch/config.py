"""Settings: environment (prefix `IMGWATCH_`), an optional env file, and CLI flags.

Precedence, highest first: CLI flags, real environment variables, the env file(s),
the defaults below.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from imgwatch.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "IMGWATCH_"
# Looked for in this order when no --env-file is given; a later file overrides an earlier one.
DEFAULT_ENV_FILES = (Path("/etc/imgwatch/imgwatch.env"), Path("imgwatch.env"))
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
SQLITE_FILE_NAME = "imgwatch.db"
MYSQL_DRIVER = "mysql+pymysql"


class Settings(BaseSettings):
    """Everything imgwatch can be told. Field descriptions double as `--help` text."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file_encoding="utf-8",
        # Other variables in a shared env file are not ours; typos in ours are caught
        # by unknown_settings() instead.
        extra="ignore",
        validate_default=True,
    )

    image_dir: Path = Field(description="directory tree of images to watch (required)")

    db_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy database URL, e.g. mysql+pymysql://user:pw@host/db or "
        "sqlite:////var/lib/imgwatch/imgwatch.db; overrides the DB_HOST... fields",
    )
    db_host: str | None = Field(default=None, description="MySQL/MariaDB host")
    db_port: int = Field(default=3306, ge=1, le=65535, description="MySQL/MariaDB port")
    db_user: str | None = Field(default=None, description="MySQL/MariaDB user")
    db_password: SecretStr | None = Field(default=None, description="MySQL/MariaDB password")
    db_name: str | None = Field(default=None, description="MySQL/MariaDB database name")

    wp_api_url: str | None = Field(default=None, description="WordPress media endpoint or site URL")
    wp_user: str | None = Field(default=None, description="WordPress user name")
    wp_password: SecretStr | None = Field(
        default=None, description="WordPress Application Password"
    )

    wp_workers: int = Field(default=4, ge=1, le=64, description="parallel WordPress uploads")
    wp_connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for a WordPress connection"
    )
    wp_read_timeout: float = Field(
        default=120.0, gt=0, description="seconds to wait for a WordPress answer (uploads too)"
    )
    wp_ca_bundle: Path | None = Field(
        default=None, description="CA bundle to verify WordPress's TLS certificate with"
    )
    wp_retries: int = Field(
        default=3, ge=1, le=20, description="upload attempts per file before it is failed"
    )
    wp_backoff: float = Field(
        default=1.0, ge=0, description="seconds before the first retry; doubles each time"
    )
    wp_backoff_max: float = Field(default=30.0, ge=0, description="longest pause between retries")
    wp_probe_max: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="while uploads are paused by a site condition, longest pause between "
        "probes of WordPress (they start at 2 s and double)",
    )
    wp_pause_unhealthy: float = Field(
        default=900.0,
        gt=0,
        description="seconds uploads may stay paused by a condition of WordPress before "
        "the health check answers 503",
    )
    wp_share_identical: bool = Field(
        default=True, description="files with identical content share one media item"
    )
    wp_reupload_deleted: bool = Field(
        default=True,
        description="upload a file again when a person deleted its media item in WordPress "
        "(noticed when its words are next sent); false: the row is failed instead",
    )
    wp_delete_replaced: bool = Field(
        default=False, description="delete the old media item when a file's content changes"
    )

    extensions: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_EXTENSIONS,
        description="file name endings to pick up, comma-separated, case-insensitive",
    )
    default_description: str = Field(
        default="Image description", description="description given to a new image"
    )
    max_file_mb: float = Field(
        default=256.0,
        gt=0,
        description="larger files are rejected (MiB); WordPress has its own upload limit too",
    )
    batch_size: int = Field(
        default=500, ge=1, le=100_000, description="rows written per database transaction"
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    # The daemon (ignored by --rescan).
    watch_mode: Literal["auto", "inotify", "polling"] = Field(
        default="auto",
        description="auto (polling on NFS/CIFS/FUSE, inotify elsewhere), inotify or polling",
    )
    poll_interval: float = Field(
        default=5.0, gt=0, le=3600, description="seconds between looks in polling mode"
    )
    quiet_period: float = Field(
        default=1.0,
        ge=0,
        le=600,
        description="seconds a file must go without changes before it is processed",
    )
    max_wait: float = Field(
        default=60.0,
        gt=0,
        description="process a file that never goes quiet after this many seconds anyway",
    )
    reconcile_interval: float = Field(
        default=3600.0,
        ge=0,
        description="seconds between full reconciles while running; 0 turns them off",
    )
    on_delete: Literal["missing", "forget", "purge"] = Field(
        default="missing",
        description="a deleted file's row: missing (kept, marked), forget (row removed) "
        "or purge (row and WordPress media removed)",
    )
    delete_guard_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a reconcile or a run of deletes that would take more than this share "
        "of the rows (and at least delete_guard_min) is held until the files come back or "
        "`imgwatch retry --confirm-deletes`; 1 turns the guard off",
    )
    delete_guard_min: int = Field(
        default=100,
        ge=1,
        description="fewer deleted rows than this at once are never held (unless they "
        "leave the image directory with no files at all)",
    )
    # 4 on any machine: reading files waits on the disk more than on the CPU (the
    # burst benchmark on 2 cores: about 1,500 files/s with 2, about 1,950 with 4).
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="files read and hashed in parallel (daemon: threads, and for a burst"
        " processes, at most one per core; --rescan: processes, at most one per core)",
    )
    queue_size: int = Field(
        default=10_000,
        ge=10,
        le=10_000_000,
        description="files waiting to be processed before the watcher is held back",
    )
    stop_timeout: float = Field(
        default=20.0, ge=0, description="seconds to let in-flight work finish on SIGTERM"
    )
    metrics_listen: str | None = Field(
        default=None,
        description="HOST:PORT for /metrics (Prometheus) and the / and /healthz health "
        "checks, e.g. 127.0.0.1:9464 or [::1]:9464; unset: no listener",
    )

    @field_validator("extensions", mode="before")
    @classmethod
    def _split_extensions(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(" ", ",").split(",")
        if isinstance(value, list | tuple):
            cleaned = []
            for item in value:
                ext = str(item).strip().lower()
                if ext:
                    cleaned.append(ext if ext.startswith(".") else "." + ext)
            if not cleaned:
                raise ValueError("at least one extension is needed")
            return tuple(dict.fromkeys(cleaned))
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator(
        "db_url",
        "db_host",
        "db_user",
        "db_password",
        "db_name",
        "wp_api_url",
        "wp_user",
        "wp_password",
        "wp_ca_bundle",
        "metrics_listen",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `IMGWATCH_DB_HOST=` in an env file means "not set", as people expect.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_wordpress_fields(self) -> Settings:
        given = [self.wp_api_url, self.wp_user, self.wp_password]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError("WP_API_URL, WP_USER and WP_PASSWORD are needed together")
        return self

    @field_validator("metrics_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)  # raises ValueError with the reason
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return listen_address(self.metrics_listen) if self.metrics_listen else None

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

    @property
    def wordpress_enabled(self) -> bool:
        return self.wp_api_url is not None

    @model_validator(mode="after")
    def _check_database_fields(self) -> Settings:
        discrete = self.db_host or self.db_user or self.db_name or self.db_password
        if self.db_url is not None and discrete:
            raise ValueError("set either DB_URL or the DB_HOST/DB_USER/DB_NAME fields, not both")
        if discrete and not (self.db_host and self.db_user and self.db_name):
            raise ValueError("DB_HOST, DB_USER and DB_NAME are needed together")
        return self

    def database_url(self) -> URL:
        """The SQLAlchemy URL to connect to, built without string formatting."""
        if self.db_url is not None:
            try:
                url = make_url(self.db_url.get_secret_value())
            except (ArgumentError, ValueError):
                # The message would quote the URL, password and all. (A port that is
                # no number is a ValueError from int().)
                raise ConfigError("invalid setting IMGWATCH_DB_URL: not a database URL") from None
            return _with_mysql_defaults(url)
        if self.db_host:
            return URL.create(
                MYSQL_DRIVER,
                username=self.db_user,
                password=self.db_password.get_secret_value() if self.db_password else None,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
                query={"charset": "utf8mb4"},
            )
        return URL.create("sqlite", database=str(default_sqlite_path()))


def listen_address(value: str) -> tuple[str, int]:
    """(host, port) from `HOST:PORT` or `[IPV6]:PORT`."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets: [::1]:9464")
    return host, int(port)


def _with_mysql_defaults(url: URL) -> URL:
    """Use PyMySQL and utf8mb4 for a MySQL/MariaDB URL that names neither."""
    if url.get_backend_name() not in {"mysql", "mariadb"}:
        return url
    if url.get_driver_name() in {"mysqldb", ""} or "+" not in url.drivername:
        url = url.set(drivername=f"{url.get_backend_name()}+pymysql")
    if "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def default_sqlite_path() -> Path:
    """`$STATE_DIRECTORY/imgwatch.db` under systemd (StateDirectory=), else `./imgwatch.db`."""
    state = os.environ.get("STATE_DIRECTORY", "")
    # systemd joins several StateDirectory= entries with ':'; the first one is ours.
    base = Path(state.split(":")[0]) if state else Path.cwd()
    return (base / SQLITE_FILE_NAME).absolute()


def env_files(explicit: Path | None) -> tuple[Path, ...]:
    """Which env files to read: the one given, or the default lookup."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"env file {str(explicit)!r} does not exist or is not a file")
        if not os.access(explicit, os.R_OK):
            raise ConfigError(f"env file {str(explicit)!r} is not readable by this user")
        return (explicit,)
    # An unreadable default file is skipped: under systemd the root-only
    # /etc/imgwatch/imgwatch.env reaches the daemon through EnvironmentFile= instead.
    return tuple(p for p in DEFAULT_ENV_FILES if p.is_file() and os.access(p, os.R_OK))


def load_settings(overrides: dict[str, Any], env_file: Path | None = None) -> Settings:
    """Build Settings from the environment, env files and CLI overrides.

    Raises ConfigError with one line per problem; input values are never echoed,
    so a password that fails validation is not printed.
    """
    files = env_files(env_file)
    for path in files:
        warn_if_exposed(path)
    unknown = unknown_settings(files)
    if unknown:
        raise ConfigError(
            "invalid settings: " + "; ".join(f"{name} is not a known setting" for name in unknown)
        )
    try:
        return Settings(_env_file=files or None, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


SECRET_VARIABLES = {ENV_PREFIX + n for n in ("DB_PASSWORD", "WP_PASSWORD", "DB_URL")}


def warn_if_exposed(path: Path) -> None:
    """An env file holding a password that every user on the host may read."""
    try:
        mode = path.stat().st_mode
        if not mode & 0o004:
            return
        names = {name.upper() for name, value in dotenv_values(path).items() if value}
    except OSError:
        return
    if names & SECRET_VARIABLES:
        log.warning(
            "env file %s holds a password and is readable by every user (mode %o): "
            "chmod 600 it (root reads it for systemd's EnvironmentFile=)",
            path,
            mode & 0o777,
        )


def unknown_settings(files: tuple[Path, ...]) -> list[str]:
    """IMGWATCH_ names in the environment or env files that match no setting (typos)."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    names = set(os.environ)
    for path in files:
        names.update(dotenv_values(path))
    return sorted(n for n in names if n.upper().startswith(ENV_PREFIX) and n.upper() not in known)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad setting the way an operator writes it."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [str(part) for part in err["loc"] if isinstance(part, str)]
        name = (ENV_PREFIX + loc[0].upper()) if loc else "settings"
        message = err["msg"]
        if err["type"] == "missing":
            message = "is required"
        problems.append(f"{name} {message}" if loc else message)
    return "invalid settings: " + "; ".join(problems)
