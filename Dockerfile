# The worker image: the package and its console script, nothing else.
#   docker build -t timesheet-provisioner .
#   docker run -e AMQP_URL=... -e HARVEST_ACCOUNT_ID=... -e HARVEST_ACCESS_TOKEN=... \
#     -v provisioner-state:/var/lib/provisioner timesheet-provisioner
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY schemas ./schemas
COPY handlers ./handlers
COPY adapters ./adapters
COPY worker ./worker
COPY fakes ./fakes
# The state directory belongs to the user the worker runs as: SQLite writes its database,
# journal and WAL files there. A volume keeps it across containers.
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 provisioner \
    && install -d -o provisioner -g provisioner -m 0750 /var/lib/provisioner
VOLUME ["/var/lib/provisioner"]

# SQLite in the volume unless PostgreSQL is given (several workers need PostgreSQL).
# Two malloc arenas keep the worker's memory flat (worker/memory.py); set here so that
# glibc itself reads it, and the worker leaves an explicit value alone.
# The metrics and health endpoint listens on every interface inside the container.
# PROVISIONER_CPU stays auto: in a container that is unpinned (worker/cpu.py); pin each
# replica with a number of its own, or give it a cpuset.
ENV PROVISIONER_DATABASE_URL=sqlite:////var/lib/provisioner/provisioner.db \
    MALLOC_ARENA_MAX=2 \
    PROVISIONER_METRICS_BIND=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1
EXPOSE 9464

USER provisioner
# The worker's /healthz (on PROVISIONER_METRICS_BIND); the ingress service overrides this
# with its own /readyz in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('PROVISIONER_METRICS_BIND', '127.0.0.1:9464').rsplit(':', 1)[1]; u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["provisioner"]
CMD ["run"]
