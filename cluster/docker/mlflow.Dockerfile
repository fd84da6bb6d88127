# syntax=docker/dockerfile:1
# MLflow tracking server for Kubernetes: the official image plus the PostgreSQL driver (the
# backend store), boto3 (S3-compatible artifact storage) and the `auth` extra (Flask-WTF) of
# the basic-auth app that cluster/kuberay/mlflow.yaml runs, which it leaves out. Build
# from the repository root (see cluster/README.md):
#   docker build -f cluster/docker/mlflow.Dockerfile -t raypipe-mlflow:3.17.2 .

# Within the `mlflow` range of pyproject.toml (a test checks it): the server speaks the
# REST API version raypipe's client expects.
ARG MLFLOW_VERSION=3.17.2
FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}
ARG MLFLOW_VERSION

# mlflow[auth] at the image's own version: only the extra's packages are added.
RUN pip install --no-cache-dir "mlflow[auth]==${MLFLOW_VERSION}" "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2" \
 && useradd --uid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlflow

# Numeric, so that Kubernetes' runAsNonRoot can verify it is not root.
USER 1000
