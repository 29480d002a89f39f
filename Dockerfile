# One image for every component; docker-compose.yml and the k8s manifests pick the console
# script (mlc-ingress, mlc-enricher, ..., mlc-sim-exact, mlc-sim-twilio) as the command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY libs ./libs
COPY services ./services
COPY simulators ./simulators
RUN pip install --no-cache-dir --no-deps --no-build-isolation \
        ./libs/common ./services/ingress ./services/enricher ./services/dispatcher \
        ./services/auditor ./services/token-keeper ./simulators/exact ./simulators/twilio \
    && useradd --system --uid 10001 mlc
USER 10001
ENV MLC_HTTP_HOST=0.0.0.0
EXPOSE 8080
CMD ["mlc-ingress"]
