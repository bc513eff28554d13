# The lockstep operator image: a wheel built from the locked dependencies, run as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY operator ./operator
RUN uv export --frozen --no-dev --no-emit-project --no-hashes -o /dist/requirements.txt \
 && uv build --wheel --out-dir /dist

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin lockstep
COPY --from=build /dist /tmp/dist
RUN pip install --no-cache-dir -r /tmp/dist/requirements.txt /tmp/dist/*.whl && rm -rf /tmp/dist
USER 10001:10001
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 8081
ENTRYPOINT ["lockstep"]
CMD ["run"]
