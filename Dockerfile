# One image for every role: the daemon, the fake authority, the CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY resolver ./resolver
COPY fixtures ./fixtures
RUN pip install --no-cache-dir .
ENTRYPOINT ["resolver"]
