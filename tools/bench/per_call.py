"""What each concern of a call costs a server: CPU per call of a gRPC server running the call pipeline
with one more concern at a time (issue #14's "one pass through the interceptors").

    python -m tools.bench.per_call [--seconds 8] [--concurrency 16] [VARIANT ...]

Each variant is a fresh server process (on CPU 0 when the machine has two or more, with `taskset`)
answering GetServerInfo to a grpc.aio client (on CPU 1) for `--seconds`; the figure is the server's CPU
time (user + system, from /proc) divided by the calls it answered. A real Redis (the venv's redis-server,
on a free loopback port) serves the rate-limit variants. `make bench` measures whole scenarios through
Envoy; this isolates the server's own cost, where a scenario's figure mixes it with everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "bare": "plain grpc.aio, no interceptor",
    "pipeline": "the call pipeline: call state, request id in the trailers, the request read by the pipeline",
    "+log": "and the access log (JSON lines, written in batches)",
    "+gates": "and admission, metrics, the header-size check, the trusted-proxy address",
    "+ratelimit-alone": "and the rate limit in Redis, each call's script sent alone",
    "+ratelimit": "and the rate limit in Redis, concurrent calls' scripts in one pipeline (as shipped)",
}
ROOT = Path(__file__).resolve().parents[2]
READY = "ready"


# -- the server side -----------------------------------------------------------------------------------


async def serve(variant: str, port: int, redis_url: str) -> None:
    import grpc

    from emoney.platform.v1 import platform_pb2, platform_pb2_grpc

    class Platform(platform_pb2_grpc.PlatformServiceServicer):
        async def GetServerInfo(self, request, context):
            return platform_pb2.GetServerInfoResponse()

    interceptors = []
    if variant != "bare":
        interceptors = [pipeline_of(variant, redis_url)]
    server = grpc.aio.server(interceptors=interceptors)
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(Platform(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(READY, flush=True)
    await server.wait_for_termination()


def pipeline_of(variant: str, redis_url: str):
    from domain.config import Settings, parse_trusted_proxies
    from interceptors.admission import Admission
    from interceptors.metrics import MetricsRegistry
    from interceptors.pipeline import CallPipeline
    from interceptors.rate_limit import RateLimitPolicy, RateLimits
    from server.logs import configure_logging
    from storage.rate_limits import RateLimiter
    from storage.redis_store import build_redis

    order = list(VARIANTS)
    level = order.index(variant if variant != "+ratelimit-alone" else "+ratelimit")
    options: dict = {}
    if level >= order.index("+log"):
        sys.stderr = open(os.devnull, "w")  # the lines are formatted and written, to nowhere
        configure_logging("INFO")
    if level >= order.index("+gates"):
        options.update(admission=Admission(32), metrics=MetricsRegistry(), max_metadata_bytes=16_384,
                       trusted_proxies=parse_trusted_proxies("127.0.0.1"))
    if level >= order.index("+ratelimit"):
        limiter = RateLimiter(build_redis(Settings(redis_url=redis_url)), batch=variant == "+ratelimit")
        options["rate_limits"] = RateLimits(limiter, RateLimitPolicy.default().with_overrides("default.address=1000000/s:1000000"))
    return CallPipeline(**options)


# -- the client side -----------------------------------------------------------------------------------


async def load(port: int, seconds: float, concurrency: int) -> int:
    import grpc

    from emoney.platform.v1 import platform_pb2, platform_pb2_grpc

    calls = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = platform_pb2_grpc.PlatformServiceStub(channel)
        # As Envoy sends them: a request id and the client's address.
        metadata = (("x-request-id", "per-call-bench-0001"), ("x-forwarded-for", "198.51.100.7"))
        ends_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal calls
            while time.monotonic() < ends_at:
                await stub.GetServerInfo(platform_pb2.GetServerInfoRequest(), metadata=metadata, timeout=10)
                calls += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls


# -- the runner ----------------------------------------------------------------------------------------


def _pinned(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(variant: str, redis_url: str, seconds: float, concurrency: int) -> tuple[int, float]:
    from localstack.processes import free_port

    port = free_port()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "generated")])}
    server = subprocess.Popen([*_pinned(0), sys.executable, "-m", "tools.bench.per_call", "--serve", variant,
                               str(port), redis_url], stdout=subprocess.PIPE, text=True, env=environment, cwd=ROOT)
    try:
        if server.stdout is None or server.stdout.readline().strip() != READY:
            raise RuntimeError(f"the {variant} server did not start")
        client = [*_pinned(1), sys.executable, "-m", "tools.bench.per_call", "--load", str(port)]
        subprocess.run([*client, "2", str(concurrency)], check=True, env=environment, cwd=ROOT, capture_output=True)
        before = _cpu_seconds(server.pid)
        answer = subprocess.run([*client, str(seconds), str(concurrency)], check=True, env=environment, cwd=ROOT,
                                capture_output=True, text=True)
        used_s = _cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    calls = int(answer.stdout.strip())
    return calls, used_s / calls * 1e6


def start_redis() -> tuple[subprocess.Popen, str]:
    from localstack.processes import free_port, wait_for_tcp
    from localstack.redis_server import redis_server_binary

    port = free_port()
    process = subprocess.Popen([str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_tcp("127.0.0.1", port, 10)
    return process, f"redis://127.0.0.1:{port}/0"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        import uvloop

        uvloop.run(serve(argv[1], int(argv[2]), argv[3]))
        return 0
    if argv[:1] == ["--load"]:
        import uvloop

        print(uvloop.run(load(int(argv[1]), float(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tools.bench.per_call", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=f"some of {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [variant for variant in args.variants if variant not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; the variants are {', '.join(VARIANTS)}")
    redis, redis_url = start_redis()
    try:
        print(f"| variant | what the server does per call | calls in {args.seconds:g} s | server CPU µs per call |")
        print("|---|---|---:|---:|")
        for variant in args.variants or VARIANTS:
            calls, cpu_us = measure(variant, redis_url, args.seconds, args.concurrency)
            print(f"| {variant} | {VARIANTS[variant]} | {calls:,} | {cpu_us:,.0f} |", flush=True)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
