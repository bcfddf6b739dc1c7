from django.urls import path

from . import review, views

urlpatterns = [
    path("me", views.MeView.as_view(), name="api-me"),
    path("tiers", views.TierListView.as_view(), name="api-tiers"),
    path("access-requests", views.AccessRequestListCreateView.as_view(), name="api-access-requests"),
    path("access-requests/<int:pk>", views.AccessRequestDetailView.as_view(), name="api-access-request"),
    path("access-requests/<int:pk>/submit", views.AccessRequestSubmitView.as_view(), name="api-access-request-submit"),
    # Reviewer API: staff with a 2FA-verified session or a short-lived reviewer token.
    path("review/tokens", review.ReviewTokenView.as_view(), name="api-review-tokens"),
    path("review/requests", review.ReviewQueueView.as_view(), name="api-review-queue"),
    path("review/requests/<int:pk>", review.ReviewRequestView.as_view(), name="api-review-request"),
    path("review/requests/<int:pk>/approve", review.ApproveView.as_view(), name="api-review-approve"),
    path("review/requests/<int:pk>/deny", review.DenyView.as_view(), name="api-review-deny"),
    path("review/requests/<int:pk>/request-changes", review.RequestChangesView.as_view(),
         name="api-review-request-changes"),
    path("review/requests/<int:pk>/revoke", review.RevokeRequestView.as_view(), name="api-review-revoke"),
    path("review/grants/<int:pk>/revoke", review.RevokeGrantView.as_view(), name="api-review-grant-revoke"),
    path("review/certificates", review.CertificateQueueView.as_view(), name="api-review-certificates"),
    path("review/certificates/<int:pk>/file", review.CertificateFileView.as_view(), name="api-review-certificate-file"),
    path("review/certificates/<int:pk>/verify", review.CertificateVerifyView.as_view(),
         name="api-review-certificate-verify"),
    path("review/certificates/<int:pk>/reject", review.CertificateRejectView.as_view(),
         name="api-review-certificate-reject"),
    path("review/physionet-attestations/<int:pk>/verify", review.PhysioNetVerifyView.as_view(),
         name="api-review-physionet-verify"),
]
