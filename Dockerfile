# The model server as a SageMaker inference container. SageMaker runs `docker run IMAGE serve`:
# `scones serve` answers GET /ping and POST /invocations on port 8080 with the model SageMaker
# extracts to /opt/ml/model (model.onnx + metadata.json from a training job's model.tar.gz).
# Build and push as the README's deploy section does (SageMaker takes Docker v2 manifests only:
# `--provenance=false --output type=docker`); pass the ECR URI to `scones deploy --serving-image`.
FROM python:3.11-slim
WORKDIR /opt/scones
COPY pyproject.toml README.md constraints.txt ./
COPY scones scones
COPY service service
COPY handlers handlers
COPY workflow workflow
COPY training training
COPY monitoring monitoring
RUN pip install --no-cache-dir -c constraints.txt '.[serve]'
ENV SCONES_SERVE_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["scones"]
CMD ["serve"]
