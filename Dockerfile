# Segue's production image: `docker build -t segue .`, then `docker run segue run --help`.
# Two stages: wheels are built once (Segue and every dependency), the runtime stage installs
# from them alone, without compilers or an index. The embedded broker (extra `embedded`) is
# not installed: production talks to a Kafka cluster (`--brokers`, `SEGUE_BROKERS`).

FROM python:3.11-slim AS build
# A C compiler for the hot path's mypyc build (setup.py); without one it installs as pure Python.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md setup.py native-modules.txt ./
COPY segue segue
COPY flows flows
COPY operators operators
COPY models models
COPY state state
COPY benchmarks benchmarks
COPY deploy/docker/build-wheels.sh /usr/local/bin/build-wheels.sh
RUN build-wheels.sh /src /wheels

FROM python:3.11-slim
# LightGBM loads libgomp (OpenMP) on every `segue run`; slim images lack it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/segue segue \
    && mkdir -p /state /models && chown segue:segue /state /models
COPY deploy/docker/install.sh /usr/local/bin/install-segue.sh
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    install-segue.sh /wheels /opt/segue
COPY journeys /app/journeys
COPY deploy/docker/healthcheck.py /opt/segue/healthcheck.py
ENV PATH=/opt/segue/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SEGUE_METRICS_PORT=9400
USER segue
WORKDIR /home/segue
VOLUME ["/state"]
EXPOSE 9400 2101
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/segue/healthcheck.py"]
ENTRYPOINT ["segue"]
CMD ["run", "--help"]
