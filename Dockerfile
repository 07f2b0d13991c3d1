# The worker image: the package and its console script, nothing else.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY handlers ./handlers
COPY adapters ./adapters
COPY worker ./worker
COPY fakes ./fakes
RUN pip install --no-cache-dir . && useradd --create-home provisioner
USER provisioner
ENTRYPOINT ["provisioner"]
CMD ["run"]
