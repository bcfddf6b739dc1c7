from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .health import platform_health
from .models import ApiToken


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    error = serializers.CharField(required=False, help_text="Why the check failed (an exception's name).")


class HealthChecksSerializer(serializers.Serializer):
    database = HealthCheckSerializer(help_text="Critical: `vendor` when it answers.")
    storage = HealthCheckSerializer(help_text="Critical: a file written and deleted; `backend`.")
    broker = HealthCheckSerializer(help_text="Not critical: submissions wait in the database while it is down.")
    workers = HealthCheckSerializer(
        help_text="Not critical: per queue `consumers`, `workers`, `last_seen`; for the generation queue "
        "`waiting_batches` and `oldest_waiting_seconds`; `problem` when batches wait and no worker consumes it."
    )


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "unavailable"])
    serving = serializers.BooleanField(help_text="False only when `status` is `unavailable` (HTTP 503).")
    problems = serializers.ListField(child=serializers.ChoiceField(choices=["database", "storage", "broker", "workers"]),
                                     help_text="The checks that failed.")
    checks = HealthChecksSerializer()


class HealthView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        summary="Can this web process serve? (load balancer health check)",
        description=(
            "200 while this web process can serve: the database answers and the storage takes writes. "
            "`status` is `ok`, or `degraded` when the broker is unreachable or generation batches wait with "
            "no GPU worker: submissions are stored and start once the broker or a worker is back, and "
            "taking web nodes out of rotation would not help. 503 (`unavailable`) only when the database "
            "or the storage fails. Monitoring should alert on `degraded` too."
        ),
        responses={200: HealthSerializer, 503: HealthSerializer},
    )
    def get(self, request):
        report = platform_health()
        return Response(report, status=200 if report["serving"] else 503)


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
