# One image for every role: the forwarding daemon, the fake authority, the CLI.
#
# The image ships the build compiled with mypyc (setup.py, RESOLVER_COMPILE=1). With a
# registry, `docker build .` starts from python:3.11-slim, pip fetches the dependencies and
# mypy, and gcc is installed for the compile and removed in the same step. Without one,
# scripts/compose-test builds a Debian base locally, passes it as BASE, builds the wheels
# (resolver's compiled) on the host into build/wheels and passes WHEELS=build/wheels, so
# nothing is downloaded during the build.
ARG BASE=python:3.11-slim
FROM ${BASE} AS resolver

# The project and, when WHEELS names a directory of wheels, those wheels. The default copies
# pyproject.toml a second time, harmlessly, because COPY needs a source that exists.
ARG WHEELS=
COPY pyproject.toml setup.py README.md /src/
COPY resolver /src/resolver
COPY ${WHEELS:-pyproject.toml} /wheels/

# A virtual environment: Debian's own python3 refuses pip installs into the system (PEP 668),
# and the same line then works on either base.
RUN python3 -m venv /opt/resolver \
    && if [ -n "$WHEELS" ]; then \
           /opt/resolver/bin/pip install --no-cache-dir --no-index --find-links /wheels resolver; \
       else \
           apt-get update \
           && apt-get install -y --no-install-recommends gcc libc6-dev \
           && RESOLVER_COMPILE=1 /opt/resolver/bin/pip install --no-cache-dir /src \
           && apt-get purge -y --auto-remove gcc libc6-dev \
           && rm -rf /var/lib/apt/lists/*; \
       fi \
    && rm -rf /src /wheels \
    && useradd --system --uid 10053 --no-create-home --home-dir /nonexistent resolver

COPY fixtures /app/fixtures
ENV PATH=/opt/resolver/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /app
# Port 53 needs no privilege in a container: Docker sets net.ipv4.ip_unprivileged_port_start=0.
USER resolver

# Any reply, REFUSED included, proves the listener answers; `resolver query` exits 0 on a reply
# whatever its rcode, 9 when none came.
HEALTHCHECK --interval=5s --timeout=4s --start-period=3s --retries=3 \
    CMD ["resolver", "query", "@127.0.0.1", "-p", "53", "+time=2", "+tries=1", "+short", ".", "SOA"]
ENTRYPOINT ["resolver"]
CMD ["demo"]

# The servers of the fake hierarchy in docker-compose.yml. fixtures/zones put name server N at
# 127.0.0.N (fixtures/README.md); on the compose network, 172.30.0.0/24, its container is
# 172.30.0.N. The zones' name server addresses, glue included, are rewritten to match, so that
# a resolver following the referrals reaches the containers. Answer addresses (127.1.0.0/16,
# 2001:db8::/32) stay as they are.
#
# The containers serve the zones signed when the hierarchy starts: the `sign` service of
# docker-compose.yml runs docker/sign-zones.py, which makes the keys then and writes the signed
# zones and the root's trust anchor into /signed, a volume the authorities serve from and the
# recursive daemon reads its anchor from. The directory belongs to the daemon's user, and
# Docker gives a new volume the owner of the directory it is mounted on.
FROM resolver AS authority
USER root
RUN sed -i 's/\b127\.0\.0\./172.30.0./g' /app/fixtures/zones/*.zone \
    && install -d -o resolver -g resolver -m 0755 /signed
COPY docker/sign-zones.py /app/docker/sign-zones.py
USER resolver

# The forwarder of docker-compose.yml that also listens on DNS over TLS and HTTPS. Its
# certificate, and the private CA the clients trust, are made when the container starts
# (docker/make-certs.py), into /tls: a volume the clients mount too. The directory belongs to
# the daemon's user, and Docker gives a new volume the owner of the directory it is mounted on.
FROM resolver AS tls
USER root
COPY docker/make-certs.py /app/docker/make-certs.py
RUN install -d -o resolver -g resolver -m 0755 /tls
USER resolver

# dnsdist, the load balancer in front of the replicas in docker-compose.yml. The local base
# already holds Debian's package; python:3.11-slim is Debian too and gets it from apt.
FROM resolver AS dnsdist
USER root
RUN command -v dnsdist >/dev/null \
    || { apt-get update && apt-get install -y --no-install-recommends dnsdist \
         && rm -rf /var/lib/apt/lists/*; }
COPY docker/dnsdist.conf /etc/dnsdist/compose.conf
USER resolver
ENTRYPOINT ["dnsdist", "--supervised", "--disable-syslog", "-C", "/etc/dnsdist/compose.conf"]
CMD []

# The compose suite (tests/compose) and pytest, run by the `tests` service.
FROM resolver AS tests
USER root
ARG WHEELS=
COPY ${WHEELS:-pyproject.toml} /wheels/
RUN if [ -n "$WHEELS" ]; then \
        pip install --no-cache-dir --no-index --find-links /wheels pytest pytest-timeout; \
    else \
        pip install --no-cache-dir pytest pytest-timeout; \
    fi \
    && rm -rf /wheels
COPY tests/compose /suite
# The reader of `resolver query +trace` output it shares with tests/integration.
COPY tests/trace_output.py /suite/trace_output.py
ENV PYTHONDONTWRITEBYTECODE=1
WORKDIR /suite
USER resolver
HEALTHCHECK NONE
ENTRYPOINT ["python3", "-m", "pytest"]
CMD []

# Last, so that a plain `docker build .` makes the resolver image.
FROM resolver
