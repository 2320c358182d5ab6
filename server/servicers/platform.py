"""PlatformService: which build is serving. Touches no database."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from server.instance import ServerInstance


class PlatformServicer(platform_pb2_grpc.PlatformServiceServicer):
    def __init__(self, instance: ServerInstance) -> None:
        self._instance = instance

    async def GetServerInfo(
        self, request: platform_pb2.GetServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.GetServerInfoResponse:
        start_time = timestamp_pb2.Timestamp()
        start_time.FromDatetime(self._instance.started_at)
        server_time = timestamp_pb2.Timestamp()
        server_time.GetCurrentTime()
        return platform_pb2.GetServerInfoResponse(
            version=self._instance.version,
            instance_id=self._instance.instance_id,
            start_time=start_time,
            server_time=server_time,
            services=list(self._instance.service_names),
        )
