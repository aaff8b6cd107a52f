# One image for every natsmesh process: agents, the collector, the CLI.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LITELLM_LOCAL_MODEL_COST_MAP=True
WORKDIR /app
COPY pyproject.toml README.md ./
COPY natsmesh ./natsmesh
COPY cli ./cli
RUN pip install .
COPY agents ./agents
# Run one agent file: docker run IMAGE natsmesh-agent agents/flight_agent/main.py
ENTRYPOINT ["python", "-m", "natsmesh.worker"]
