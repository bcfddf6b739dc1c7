from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from .health import platform_health


class HealthView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(summary="Database, broker and storage status", responses={200: dict, 503: dict})
    def get(self, request):
        report = platform_health()
        return Response(report, status=200 if report["status"] == "ok" else 503)
