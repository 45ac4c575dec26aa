# One image for every process: web, worker, campaigns, beat and flower differ only in their command.
# The builder makes the wheel; the image installs only that wheel, so it holds no source tree
# and none of the dev tools (the dev stack, the bench, the fake WeChat), which the wheel leaves
# out (docs/decisions/0006-the-runtime-ships-without-the-dev-tools.md; tests/test_packaging.py
# builds the wheel from exactly what this stage copies).
FROM python:3.11-slim AS builder

WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in celeryconfig.py wsgi.py ./
COPY notifier ./notifier
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PORT=8000 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY --from=builder /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels && useradd --create-home --uid 10001 notifier

USER notifier
EXPOSE 8000 5555
# The Procfile's web line (tests/test_defaults.py checks): exec, so gunicorn is PID 1 and
# gets the stop signal; a shell left as PID 1 would ignore it.
CMD ["sh", "-c", "exec gunicorn wsgi:app --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2} --worker-class gevent --worker-connections 1000 --access-logfile -"]
