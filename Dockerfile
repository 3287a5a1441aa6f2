# haco: one image for coordinators (`coordinator`) and workers (`worker`). Build: docker build -t haco:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY haco ./haco
COPY raft_state ./raft_state
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp HACO_DATA_DIR=/var/lib/haco
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && groupadd --system --gid 10001 haco && useradd --system --uid 10001 --gid haco --home-dir /var/lib/haco haco \
 && mkdir -p /var/lib/haco && chown haco:haco /var/lib/haco
USER 10001:10001
WORKDIR /var/lib/haco
VOLUME /var/lib/haco
EXPOSE 7001 7100
ENTRYPOINT ["haco"]
CMD ["coordinator"]
