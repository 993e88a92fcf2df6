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
RUN groupadd --system pprl && useradd --system --gid pprl --home /var/lib/pprl pprl \
    && mkdir -p /var/lib/pprl /app && chown pprl:pprl /var/lib/pprl
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
