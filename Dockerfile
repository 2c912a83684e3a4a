# The model server as a SageMaker inference container. SageMaker runs `docker run IMAGE serve`:
# `scones serve` answers GET /ping and POST /invocations on port 8080 with the model SageMaker
# extracts to /opt/ml/model (model.onnx + metadata.json from a training job's model.tar.gz).
# Build and push: docker build -t scones-serve . && docker tag/push to ECR; pass the URI to
# `scones deploy --serving-image`.
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
