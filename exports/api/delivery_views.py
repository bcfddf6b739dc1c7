"""/api/v1/destinations and deliveries: push a ready export to a PACS. Thin: decisions live in
exports.delivery; other people's exports and deliveries are 404."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from access import capabilities as caps
from access.policy import require_capability
from exports import delivery as deliveries
from exports import selectors
from exports.models import Destination

from .serializers import DeliveryDetailSerializer, DeliveryRequestSerializer, DeliverySerializer, DestinationSerializer
from .views import REFUSAL, CanExportWithApi, Refused


class DestinationListView(generics.ListAPIView):
    """The PACS destinations you may send exports to."""

    permission_classes = [IsAuthenticated, CanExportWithApi]
    serializer_class = DestinationSerializer

    def get_queryset(self):
        return selectors.destinations_for(self.request.user)


class ExportDeliveriesView(generics.ListAPIView):
    """Deliveries of one of your exports (GET) and sending it to a destination (POST)."""

    permission_classes = [IsAuthenticated, CanExportWithApi]
    serializer_class = DeliverySerializer

    def get_export(self):
        export = selectors.export_of(self.request.user, self.kwargs["pk"])
        require_capability(self.request.user, caps.EXPORT_DICOM, export.cohort.model_version)
        return export

    def get_queryset(self):
        return selectors.deliveries_of_export(self.request.user, self.get_export())

    @extend_schema(request=DeliveryRequestSerializer, responses={
        202: DeliverySerializer,
        403: OpenApiResponse(REFUSAL, description="The destination does not exist or is not open to you, or "
                                                  "your access does not include DICOM export of this model."),
        409: OpenApiResponse(REFUSAL, description="The export is not ready, or is already being sent there."),
        410: OpenApiResponse(REFUSAL, description="The export has expired."),
        429: OpenApiResponse(REFUSAL, description="Too many deliveries queued or sending."),
    })
    def post(self, request, pk):
        export = self.get_export()
        data = DeliveryRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        destination = Destination.objects.filter(pk=data.validated_data["destination"]).first()
        try:
            delivery = deliveries.request_delivery(user=request.user, export=export, destination=destination)
        except deliveries.DeliveryRefused as refusal:
            raise Refused(refusal) from None
        return Response(DeliverySerializer(delivery, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class DeliveryDetailView(APIView):
    """Status of one of your deliveries: counts, and why each failed instance failed."""

    permission_classes = [IsAuthenticated, CanExportWithApi]

    @extend_schema(responses={200: DeliveryDetailSerializer})
    def get(self, request, pk):
        delivery = selectors.delivery_of(request.user, pk)
        require_capability(request.user, caps.EXPORT_DICOM, delivery.export.cohort.model_version)
        return Response(DeliveryDetailSerializer(delivery, context={"request": request}).data)


class DeliveryRetryView(APIView):
    """Send the instances of a partly sent or failed delivery that were not stored, again."""

    permission_classes = [IsAuthenticated, CanExportWithApi]

    @extend_schema(request=None, responses={
        202: DeliverySerializer,
        409: OpenApiResponse(REFUSAL, description="Only a partly sent or failed delivery can be retried."),
    })
    def post(self, request, pk):
        delivery = selectors.delivery_of(request.user, pk)
        try:
            delivery = deliveries.retry_delivery(user=request.user, delivery=delivery)
        except deliveries.DeliveryRefused as refusal:
            raise Refused(refusal) from None
        return Response(DeliverySerializer(delivery, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)
