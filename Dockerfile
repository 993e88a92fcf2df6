# pprl: API + enclave worker image. Build: docker build -t pprl .
# Multi-stage: wheels are built in the first stage; the runtime has no compiler.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY linkage ./linkage
COPY service ./service
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PPRL_DATA_DIR=/var/lib/pprl
# one group, two users: the API (10001) and the enclave worker (10002) share only the
# sealed blobs; the worker's key, scratch and state directories are its own (compose
# mounts a volume on each, and a fresh named volume takes these owners and modes)
RUN groupadd --gid 10000 pprl && useradd --uid 10001 --gid pprl --home /var/lib/pprl pprl \
    && useradd --uid 10002 --gid pprl --home /var/lib/pprl pprl-enclave \
    && mkdir -p /var/lib/pprl/keys /var/lib/pprl/enclave-key /var/lib/pprl/work \
       /var/lib/pprl/enclave /app \
    && chown pprl:pprl /var/lib/pprl && chmod 2770 /var/lib/pprl \
    && chown pprl-enclave:pprl /var/lib/pprl/keys && chmod 0755 /var/lib/pprl/keys \
    && chown pprl-enclave:pprl /var/lib/pprl/enclave-key /var/lib/pprl/work /var/lib/pprl/enclave \
    && chmod 0700 /var/lib/pprl/enclave-key /var/lib/pprl/work /var/lib/pprl/enclave
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# migrations live beside the code (the service locates them relative to service/)
COPY migrations ./migrations
COPY examples ./examples
USER pprl
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import ssl,urllib.request as u; u.urlopen('https://127.0.0.1:8443/healthz', context=ssl._create_unverified_context(), timeout=4)" || exit 1
ENTRYPOINT ["pprl"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8443", "--tls-cert", "/run/secrets/tls_cert", "--tls-key", "/run/secrets/tls_key", "--no-worker"]
