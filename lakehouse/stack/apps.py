"""The servers people open, started next to the data services by `lakehouse stack up --apps`:
MLflow, Prefect (server + the nightly deployment it schedules), Superset, JupyterLab, the
supervised streaming ingest, the real-time search indexer and the plan API. Same contract as
the data services (lakehouse/stack/services.py): plain processes on 127.0.0.1, a state folder
each, a real readiness probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from lakehouse.config import PROJECT_ROOT, Config
from lakehouse.stack.process import StackError
from lakehouse.stack.secrets import local_secret
from lakehouse.stack.services import PostgresService, Service

VENV_BIN = Path(sys.executable).parent
SUPERSET_VENV_BIN = PROJECT_ROOT / ".venv-superset" / "bin"
SUPERSET_CONF = PROJECT_ROOT / "conf" / "superset"

SUPERSET_SECRET_KEY_VAR = "LAKEHOUSE_SUPERSET_SECRET_KEY"
SUPERSET_ADMIN_PASSWORD_VAR = "LAKEHOUSE_SUPERSET_ADMIN_PASSWORD"
JUPYTER_TOKEN_VAR = "LAKEHOUSE_JUPYTER_TOKEN"


def _get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


class MlflowService(Service):
    """The MLflow UI and API over the registry the gold jobs write (SQLite under state/mlflow)."""

    name = "mlflow"

    @property
    def port(self) -> int:
        return self.config.apps.mlflow_port

    @property
    def marker(self) -> str:
        return f"--port {self.port}"

    def command(self) -> list[str]:
        from lakehouse.gold.detection import artifact_location, tracking_uri

        uri = tracking_uri(self.config)
        command = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", uri]
        artifacts = artifact_location(uri)
        if artifacts:
            command += ["--default-artifact-root", artifacts]
        return [*command, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]

    def probe(self) -> None:
        if _get(f"http://127.0.0.1:{self.port}/health").strip() != b"OK":
            raise StackError("mlflow: /health did not answer OK")


class PrefectService(Service):
    """Prefect's API and UI (SQLite under state/prefect): schedules and shows the nightly flow."""

    name = "prefect"

    @property
    def port(self) -> int:
        return self.config.apps.prefect_port

    @property
    def marker(self) -> str:
        return f"--port {self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def command(self) -> list[str]:
        return [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                "--port", str(self.port)]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.paths.data.resolve()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }

    def probe(self) -> None:
        if _get(f"{self.api_url}/health").strip() != b"true":
            raise StackError("prefect: /api/health did not answer true")


class NightlyDeploymentService(Service):
    """`flows/nightly.py --serve`: registers the nightly deployment with the Prefect server and
    runs its scheduled (and manually triggered) flow runs."""

    name = "nightly"
    depends_on = ("prefect", "postgres", "kafka", "ferretdb", "elasticsearch")
    listens = False

    @property
    def port(self) -> int:
        return self.config.apps.prefect_port

    @property
    def marker(self) -> str:
        return str(PROJECT_ROOT / "flows" / "nightly.py")

    def command(self) -> list[str]:
        script = str(PROJECT_ROOT / "flows" / "nightly.py")
        return [sys.executable, script, "--serve", "--env", self.config.environment]

    def env(self) -> dict[str, str]:
        return {
            "PREFECT_API_URL": PrefectService(self.config).api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def probe(self) -> None:
        api = PrefectService(self.config).api_url
        deployment = json.loads(_get(f"{api}/deployments/name/nightly/nightly"))
        if deployment.get("status") != "READY":
            raise StackError(f"nightly: deployment status is {deployment.get('status')}")


class SupersetService(Service):
    """Superset (its own virtualenv, `make superset`) with its metadata in the stack's PostgreSQL.

    The first start creates the metadata database and schema and the admin user; later starts
    redo that only when Superset's pins or the admin's credentials changed.
    """

    name = "superset"
    depends_on = ("postgres",)

    @property
    def port(self) -> int:
        return self.config.apps.superset_port

    @property
    def marker(self) -> str:
        return f"--bind=127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def missing_prerequisites(self) -> list[str]:
        if not (SUPERSET_VENV_BIN / "gunicorn").exists():
            return [f"Superset's virtualenv {SUPERSET_VENV_BIN.parent}: run `make superset`"]
        return []

    def env(self) -> dict[str, str]:
        postgres = PostgresService(self.config)
        return {
            "SUPERSET_CONFIG_PATH": str(SUPERSET_CONF / "superset_config.py"),
            "SUPERSET_SECRET_KEY": local_secret(self.config, SUPERSET_SECRET_KEY_VAR),
            "LAKEHOUSE_SUPERSET_METADATA_URI": (
                f"postgresql+psycopg2://{postgres.user}@127.0.0.1:{postgres.port}/"
                f"{self.config.apps.superset_database}"
            ),
            # Superset's libpq connections read the password here; it appears in no URI.
            **({"PGPASSWORD": pw} if (pw := os.environ.get("LAKEHOUSE_POSTGRES_PASSWORD")) else {}),
        }

    def prepare(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        PostgresService(self.config).create_database(self.config.apps.superset_database)
        user = self.config.apps.superset_admin_user
        password = local_secret(self.config, SUPERSET_ADMIN_PASSWORD_VAR)
        inputs = (SUPERSET_CONF / "requirements.txt").read_bytes() + f"{user}\0{password}".encode()
        stamp = self.paths.root / "initialised"
        digest = hashlib.sha256(inputs).hexdigest()
        if stamp.exists() and stamp.read_text().strip() == digest:
            return
        self._superset("db", "upgrade")
        created = self._superset(
            "fab", "create-admin", "--username", user, "--firstname", "Lakehouse",
            "--lastname", "Admin", "--email", f"{user}@localhost", "--password", password,
        )  # fmt: skip
        if "already exist" in created:
            self._superset("fab", "reset-password", "--username", user, "--password", password)
        self._superset("init")
        stamp.write_text(digest + "\n")

    def _superset(self, *args: str) -> str:
        result = subprocess.run(
            [str(SUPERSET_VENV_BIN / "superset"), *args],
            capture_output=True, text=True, env={**os.environ, **self.env()},
        )  # fmt: skip
        with open(self.paths.log, "a") as log:
            log.write(f"--- superset {args[0]} {args[1] if len(args) > 1 else ''}\n")
            log.write(result.stdout[-4000:] + result.stderr[-4000:])
        if result.returncode != 0:
            raise StackError(
                f"superset: `superset {' '.join(args[:2])}` failed (status {result.returncode}); "
                f"see {self.paths.log}:\n{result.stderr[-1500:]}"
            )
        return result.stdout + result.stderr

    def command(self) -> list[str]:
        # One worker with threads: the dashboard's charts load in parallel on little memory.
        return [str(SUPERSET_VENV_BIN / "gunicorn"), f"--bind=127.0.0.1:{self.port}",
                "--workers=1", "--worker-class=gthread", "--threads=8", "--timeout=120",
                "superset.app:create_app()"]  # fmt: skip

    def probe(self) -> None:
        if _get(f"{self.url}/health").strip() != b"OK":
            raise StackError("superset: /health did not answer OK")


class JupyterService(Service):
    """JupyterLab on notebooks/, in the project's virtualenv (the notebooks import lakehouse)."""

    name = "jupyter"

    @property
    def port(self) -> int:
        return self.config.apps.jupyter_port

    @property
    def marker(self) -> str:
        return f"--ServerApp.port={self.port}"

    def command(self) -> list[str]:
        return [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={PROJECT_ROOT / 'notebooks'}",
                # root in containers and CI; Jupyter refuses root unless told
                *(["--allow-root"] if os.geteuid() == 0 else [])]  # fmt: skip

    def env(self) -> dict[str, str]:
        # From the environment, not the command line: `ps` shows command lines to every user.
        return {
            "JUPYTER_TOKEN": local_secret(self.config, JUPYTER_TOKEN_VAR),
            "JUPYTER_RUNTIME_DIR": str(self.paths.data.resolve() / "runtime"),
            "LAKEHOUSE_ENV": self.config.environment,
        }

    def probe(self) -> None:
        json.loads(_get(f"http://127.0.0.1:{self.port}/api"))


class SupervisedCommand(Service):
    """A long-lived `lakehouse <subcommand>` under a supervisor that restarts it after a crash,
    with a growing pause (lakehouse/stack/supervisor.py)."""

    subcommand = ""
    listens = False

    @property
    def port(self) -> int:
        return 0

    @property
    def marker(self) -> str:
        return f"--status-file {self.status_file}"

    @property
    def status_file(self) -> Path:
        return self.paths.root / "supervisor.json"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "lakehouse.stack.supervisor", "--name", self.name,
            "--status-file", str(self.status_file),
            "--max-backoff-s", str(self.config.apps.ingest_max_backoff_s),
            # below the stack's own 45 s grace, so a graceful stop is never cut short
            "--stop-timeout-s", "40",
            "--", str(VENV_BIN / "lakehouse"), "--env", self.config.environment, self.subcommand,
        ]  # fmt: skip

    def probe(self) -> None:
        from lakehouse.stack.process import process_alive
        from lakehouse.stack.supervisor import read_status

        status = read_status(self.status_file)
        # A killed supervisor leaves its last status behind: the file alone proves nothing.
        if status is None or not process_alive(status.supervisor_pid, self.marker):
            raise StackError(f"{self.name}: no supervisor running")
        if status.state != "running":
            raise StackError(f"{self.name}: supervisor state is {status.state}")


class IngestService(SupervisedCommand):
    """The streaming ingest (`lakehouse ingest`): Kafka -> bronze -> silver."""

    name = "ingest"
    subcommand = "ingest"
    depends_on = ("kafka", "postgres", "ferretdb", "elasticsearch")


class IndexerService(SupervisedCommand):
    """The real-time search indexer (`lakehouse indexer`): Kafka -> Elasticsearch."""

    name = "indexer"
    subcommand = "indexer"
    depends_on = ("kafka", "elasticsearch")


class ApiService(SupervisedCommand):
    """The plan API (`lakehouse api serve`, docs/api.md): HTTP on 127.0.0.1:api.port, restarted
    by its supervisor like the ingest. Ready when /v1/healthz answers 200, i.e. the API itself
    reaches the plan store and the broker."""

    name = "api"
    subcommand = "api"
    listens = True
    depends_on = ("kafka", "ferretdb", "elasticsearch")

    @property
    def port(self) -> int:
        return self.config.api.port

    @property
    def port_setting(self) -> str:
        return "LAKEHOUSE_API_PORT"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [*super().command(), "serve"]

    def probe(self) -> None:
        super().probe()
        health = json.loads(_get(f"{self.url}/healthz"))  # urlopen raises on a 503
        if health.get("status") != "ok":
            raise StackError(f"api: /v1/healthz answered {health}")


APP_SERVICE_TYPES: tuple[type[Service], ...] = (
    MlflowService,
    PrefectService,
    SupersetService,
    JupyterService,
    IngestService,
    IndexerService,
    ApiService,
    NightlyDeploymentService,
)


def app_urls(config: Config) -> str:
    """Where each app server answers (or that it does not), and where its credentials are."""
    from lakehouse.stack.secrets import describe

    apps = config.apps
    superset_password = describe(config, SUPERSET_ADMIN_PASSWORD_VAR)
    lines = [
        (PrefectService, f"http://127.0.0.1:{apps.prefect_port}/deployments", ""),
        (MlflowService, f"http://127.0.0.1:{apps.mlflow_port}/#/models", ""),
        (
            SupersetService,
            f"http://127.0.0.1:{apps.superset_port}/superset/dashboard/plan-costs/",
            f"user {apps.superset_admin_user}, password in {superset_password}",
        ),
        (
            JupyterService,
            f"http://127.0.0.1:{apps.jupyter_port}/lab",
            f"token in {describe(config, JUPYTER_TOKEN_VAR)}",
        ),
        (
            ApiService,
            f"http://127.0.0.1:{config.api.port}/v1/docs",
            "bearer token: `lakehouse api token --scope plans:write`",
        ),
    ]
    width = max(len(cls.name) for cls, _, _ in lines)
    out = []
    for cls, url, note in lines:
        try:
            cls(config).probe()
        except Exception:  # not running or not ready: say so instead of a dead link
            note = "not running: `lakehouse stack up --apps`"
        out.append(f"  {cls.name.ljust(width)}  {url}" + (f"  ({note})" if note else ""))
    return "\n".join(out)
