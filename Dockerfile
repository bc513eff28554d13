# The lockstep operator image: the wheel and its locked dependencies in a virtual environment,
# run as a non-root user on a read-only root filesystem.
#
#   docker build -t lockstep/operator:dev .
#
# Build arguments:
#   BASE    an image with Python 3.11+ and its venv module (default: the official Python image;
#           a Debian image with python3 and python3-venv works too)
#   WHEELS  where the Python packages come from:
#             registry  (default) resolved from uv.lock and downloaded from PyPI during the build
#             context   every wheel already in ./wheelhouse of the build context, with the
#                       requirements.txt exported from uv.lock: an offline build
#                       (see docs/testing.md, "The operator image")
ARG BASE=python:3.11-slim

# -- the wheels: the project's and every locked dependency's, with the requirements (and their
#    hashes) exported from uv.lock; uv only reads the lock, pip downloads and builds
FROM ${BASE} AS wheels
ARG WHEELS=registry
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY operator ./operator
# ./wheelhouse is optional: README.md keeps the list of sources non-empty without it.
COPY README.md wheelhouse* /wheelhouse/
RUN set -eu; \
    if [ "$WHEELS" = context ]; then \
      test -f /wheelhouse/requirements.txt \
        || { echo "WHEELS=context needs wheelhouse/requirements.txt in the context" >&2; exit 1; }; \
    else \
      python3 -m venv /opt/build; \
      /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check uv==0.13.9; \
      /opt/build/bin/uv export --frozen --no-dev --no-emit-project -o /wheelhouse/requirements.txt; \
      /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
        --require-hashes -r /wheelhouse/requirements.txt -w /wheelhouse; \
      /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
        -w /wheelhouse /src; \
    fi

# -- the operator: nothing reaches the network here; every package is checked against the lock,
#    and pip leaves with the build (the operator never installs anything)
FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin lockstep
RUN --mount=type=bind,from=wheels,source=/wheelhouse,target=/wheelhouse \
    python3 -m venv /opt/lockstep \
 && /opt/lockstep/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /wheelhouse --require-hashes -r /wheelhouse/requirements.txt \
 && /opt/lockstep/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --no-deps /wheelhouse/lockstep-*.whl \
 && /opt/lockstep/bin/pip uninstall --yes --quiet --disable-pip-version-check pip setuptools \
 && /opt/lockstep/bin/lockstep --help >/dev/null
ENV PATH=/opt/lockstep/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["lockstep"]
CMD ["run"]
