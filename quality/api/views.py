from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.api.views import CohortApiMixin
from quality.selectors import quality_card


class CohortQualityView(CohortApiMixin, APIView):
    @extend_schema(
        summary="A cohort's quality card",
        description=(
            "Quality-control pass rates overall and per subgroup (sex × race × age band × findings, and each "
            "margin), failures per check, checks that were configured but unavailable (with the reason), "
            "regeneration attempts and generation time, and the fidelity / diversity figures, or why they are "
            "unavailable. See docs/quality.md."
        ),
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The quality card (see docs/quality.md).")},
    )
    def get(self, request, pk):
        return Response(quality_card(self.get_cohort()))
