"""/api/v1/me, /api/v1/tiers, /api/v1/access-requests. Users only ever see their own objects."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access import capabilities as caps
from access import selectors, services
from access.policy import access_policy

from .serializers import (
    AccessRequestCreateSerializer,
    AccessRequestSerializer,
    GrantSerializer,
    ProfileSerializer,
    TierSerializer,
)


def _images_used_today(user) -> int:
    from generation.services import images_reserved  # imported late: generation imports access

    return images_reserved(user)


class MeView(APIView):
    @extend_schema(summary="Your profile, grants, capabilities and quotas left", responses={200: dict})
    def get(self, request):
        user = request.user
        policy = access_policy(user)
        used = _images_used_today(user)
        quotas = {name: {"limit": limit} for name, limit in policy.quotas.items()}
        if caps.DAILY_IMAGES in quotas and used is not None:
            quotas[caps.DAILY_IMAGES].update(used=used, left=max(0, policy.daily_image_quota - used))
        return Response(
            {
                "username": user.get_username(),
                "email": user.email,
                "email_verified": user.email_verified,
                "profile": ProfileSerializer(services.profile_for(user)).data,
                "credentials": policy.credentials,
                "grants": GrantSerializer(selectors.grants_of(user), many=True).data,
                "capabilities": sorted(policy.capabilities),
                "quotas": quotas,
            }
        )


class TierListView(APIView):
    @extend_schema(summary="Tiers you can request, with what you still lack for each", responses={200: TierSerializer(many=True)})
    def get(self, request):
        policy = access_policy(request.user)
        held = {grant.tier_id for grant in policy.grants}
        data = []
        for tier in selectors.active_tiers():
            item = TierSerializer(tier).data
            item["held"] = tier.pk in held
            item["missing"] = policy.missing_for(tier)
            data.append(item)
        return Response(data)


class AccessRequestListCreateView(generics.ListAPIView):
    serializer_class = AccessRequestSerializer

    def get_queryset(self):
        return selectors.requests_of(self.request.user).prefetch_related("events__actor")

    @extend_schema(request=AccessRequestCreateSerializer, responses={201: AccessRequestSerializer})
    def post(self, request):
        incoming = AccessRequestCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        request_obj = services.create_request(user=request.user, **incoming.validated_data)
        return Response(AccessRequestSerializer(request_obj).data, status=status.HTTP_201_CREATED)


class AccessRequestDetailView(APIView):
    @extend_schema(responses={200: AccessRequestSerializer})
    def get(self, request, pk):
        return Response(AccessRequestSerializer(selectors.request_of(request.user, pk)).data)


class AccessRequestSubmitView(APIView):
    @extend_schema(request=None, responses={200: AccessRequestSerializer})
    def post(self, request, pk):
        request_obj = services.submit_request(request_obj=selectors.request_of(request.user, pk), actor=request.user)
        return Response(AccessRequestSerializer(request_obj).data)
