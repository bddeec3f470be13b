# One image for every demo service; docker-compose.yml picks the command per service.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir ".[all]" fastapi uvicorn httpx redis
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
EXPOSE 8100
CMD ["python", "-m", "plyra_trace", "serve", "--host", "0.0.0.0", "--port", "8100"]
