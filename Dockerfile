# One image for every process: web, worker, bulk, beat and flower differ only in their command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py wsgi.py ./
COPY notifier ./notifier
RUN pip install . && useradd --create-home --uid 10001 notifier

USER notifier
EXPOSE 8000 5555
CMD ["gunicorn", "wsgi:app", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-class", "gthread", "--threads", "8"]
