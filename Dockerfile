# One image for every process: web, worker, campaigns, beat and flower differ only in their command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PORT=8000 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py wsgi.py ./
COPY notifier ./notifier
RUN pip install . && useradd --create-home --uid 10001 notifier

USER notifier
EXPOSE 8000 5555
# The Procfile's web line (tests/test_defaults.py checks): exec, so gunicorn is PID 1 and
# gets the stop signal; a shell left as PID 1 would ignore it.
CMD ["sh", "-c", "exec gunicorn wsgi:app --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2} --worker-class gthread --threads 8 --access-logfile -"]
