"""The web process (gunicorn): signed requests in, 202 out; status, operator and callback views."""
