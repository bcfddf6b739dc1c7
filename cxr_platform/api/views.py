from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .health import platform_health
from .models import ApiToken


class HealthView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(summary="Database, broker and storage status", responses={200: dict, 503: dict})
    def get(self, request):
        report = platform_health()
        return Response(report, status=200 if report["status"] == "ok" else 503)


class WhoAmISerializer(serializers.Serializer):
    username = serializers.CharField()
    authenticated_with = serializers.ChoiceField(choices=["token", "session"])
    token_prefix = serializers.CharField(allow_null=True)


class WhoAmIView(APIView):
    """Who the request acts as: the quickest way for a client to check its token."""

    @extend_schema(summary="The account this request acts as", responses={200: WhoAmISerializer})
    def get(self, request):
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return Response(
            WhoAmISerializer(
                {
                    "username": request.user.get_username(),
                    "authenticated_with": "token" if token else "session",
                    "token_prefix": token.prefix if token else None,
                }
            ).data
        )
